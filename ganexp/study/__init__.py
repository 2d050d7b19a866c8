"""Studies of many runs: sweeps (``sweep``: job folder names, failures, the summary line) and
``ganexp compare`` (``runs`` reads run folders, ``table`` groups and tabulates, ``plot`` draws)."""
