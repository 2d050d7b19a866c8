"""The build wing: ``build_run(cfg)`` turns a composed config into a Run (``build``), with the
factories shared by ``sample``/``eval`` (``factory``), the checks a config's types cannot express
(``validate``), resuming (``resume``), TensorBoard hparams (``hparams``) and the typed schema
(``schema``)."""
from __future__ import annotations


def __getattr__(name: str):  # ``from ganexp.build import build_run`` without importing torch for the others
    if name == "build_run":
        from ganexp.build.build import build_run

        return build_run
    raise AttributeError(f"module 'ganexp.build' has no attribute '{name}'")
