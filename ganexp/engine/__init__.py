"""The engine wing: ``train(run)`` executes a Run built by ``ganexp.build.build_run``; it never
reads the config. ``loop`` (the run from first to last step), ``step`` (one step through the hooks),
``snapshot`` (checkpoint state and restore), ``sampler``, ``visuals``, ``run`` (the Run), ``latent``
lives with the models; ``distributed``/``launch`` (one process or DDP), ``checkpoint`` (files),
``lr_schedule``."""
from __future__ import annotations


def __getattr__(name: str):  # ``from ganexp.engine import train`` without importing torch for the other modules
    if name == "train":
        from ganexp.engine.loop import train

        return train
    raise AttributeError(f"module 'ganexp.engine' has no attribute '{name}'")
