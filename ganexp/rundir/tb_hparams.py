"""TensorBoard's HPARAMS tab for a run: its hparams and final metrics, with the keys its sweep varies
marked as differing. TensorBoard lists the hparams that differ first (then by name) and shows the
first five of them and the first five metrics; so a sweep's swept keys and its scores are the
columns a user sees, not five constant ones."""
from __future__ import annotations


class HParams(dict):
    """A run's hparams, with the keys its sweep varies (``swept``)."""

    def __init__(self, values=(), swept=()):
        super().__init__(values)
        self.swept = tuple(swept)


def metric_order(tag: str) -> tuple[int, str]:
    """The scores first, then their floors and real values, then the losses."""
    ref = tag.endswith(("_real", "_baseline")) or "_baseline_n" in tag
    return (0 if tag.startswith("metrics/") and not ref else 1 if tag.startswith("metrics/") else 2), tag


def hparams_summaries(hp: dict, final: dict) -> list:
    """The experiment, session-start and session-end summaries: ``hp`` as hparams (``hp.swept``
    marked as differing), the final losses and every ``metrics/...`` as metrics."""
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from torch.utils.tensorboard.summary import hparams

    clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hp.items()}
    tags = {t: 0.0 for t in sorted((t for t in final if t in ("loss/d", "loss/g") or t.startswith("metrics/")), key=metric_order)}
    experiment, *session = hparams(clean, tags)
    swept = set(getattr(hp, "swept", ()))
    if swept:
        meta = experiment.value[0].metadata.plugin_data
        data = HParamsPluginData.FromString(meta.content)
        for info in data.experiment.hparam_infos:
            info.differs = info.name in swept
        meta.content = data.SerializeToString()
    return [experiment, *session]
