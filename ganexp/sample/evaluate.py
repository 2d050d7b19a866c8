"""`ganexp eval`: score a checkpoint with the metrics of conf/metrics, print a table, write JSON."""
from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from ganexp.engine import checkpoint
from ganexp.engine.sampler import Sampler
from ganexp.errors import ConfigError, whole_number
from ganexp.rundir import files
from ganexp.rundir.files import unwritable
from ganexp.rundir.console import console
from ganexp.sample.rebuild import build_eval


def metric_nodes(names: list[str]) -> DictConfig:
    """The conf/metrics entries for ``names``, as composition would place them."""
    nodes = {}
    for n in names:
        text = (resources.files("ganexp.conf") / "metrics" / f"{n}.yaml").read_text()
        nodes.update(OmegaConf.to_container(OmegaConf.create(text)))
    return OmegaConf.create(nodes)


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], Path]:
    """Score ``cfg.ckpt``; return the metrics and the JSON path they were written to."""
    if cfg.num_samples is not None:
        whole_number(cfg.num_samples, "num_samples")
    whole_number(cfg.batch_size, "batch_size")
    path = checkpoint.resolve(cfg.ckpt)
    where = Path(cfg.out).expanduser() if cfg.out else path.parent.parent / "eval" / "x.json"
    why = unwritable(where)  # before any work: a shared, read-only checkpoint is scored with out=
    if why:
        raise ConfigError(f"cannot write {where.parent if not cfg.out else where}: {why}; "
                          f"give out=PATH (a .json file in a writable folder)")
    nodes = (cfg.get("eval") or {}).get("metrics") or metric_nodes(["default"])  # the one default policy
    t0 = time.perf_counter()
    G, latent, state, data, metrics = build_eval(cfg, nodes)
    sampler = Sampler(G, latent, cfg.batch_size)
    step = int(state["step"])
    values: dict[str, float] = {}
    out = Path(cfg.out).expanduser() if cfg.out else path.parent.parent / "eval" / result_name(path.stem, step, list(nodes), cfg.num_samples)
    for m in metrics:
        values.update(m(sampler, step))
        for tag, fig in (m.figures(sampler, step) if hasattr(m, "figures") else {}).items():
            files.atomic_write(out.with_name(f"{out.stem}_{tag}.png"), lambda f: fig.savefig(f, format="png"))
    report = {"ckpt": str(path), "step": step, "dataset": state["data_info"].get("name", ""),
              "num_samples": {m.name: m.n for m in metrics}, "seconds": round(time.perf_counter() - t0, 2), "metrics": values}
    clf = [getattr(m, "ext", None) for m in metrics]
    acc = {e.key: e.accuracy for e in clf if hasattr(e, "accuracy")}
    if acc:
        report["classifier_accuracy"] = acc
    files.write_text(out, json.dumps(report, indent=2))
    return values, out


def result_name(stem: str, step: int, metrics: list[str], num_samples: int | None) -> str:
    """One JSON per checkpoint, metric set and sample count, so a second evaluation with other
    metrics or counts keeps the first: ``last_step2000_fid_clf+kid_clf_n5000.json``."""
    return f"{stem}_step{step}_{'+'.join(sorted(metrics))}" + (f"_n{num_samples}" if num_samples is not None else "") + ".json"


def print_table(values: dict[str, float], ckpt: str) -> None:
    table = Table(title=f"ganexp eval {ckpt}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in values.items():
        table.add_row(k, f"{v:.4g}")
    console.print(table)
