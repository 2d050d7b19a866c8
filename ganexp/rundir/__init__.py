"""The run folder: what it holds (``layout``), safe writes and its lock (``files``), what a run shows
(``monitor``: TensorBoard, samples, console, log file) and where it came from (``provenance``)."""
