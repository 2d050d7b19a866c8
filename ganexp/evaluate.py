"""`ganexp eval`: score a checkpoint with the metrics of conf/metrics, print a table, write JSON."""
from __future__ import annotations

import json
import sys
import time
from importlib import resources
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape
from rich.table import Table

from ganexp import checkpoint, files
from ganexp.data import DataInfo
from ganexp.errors import GanexpError
from ganexp.monitor import console


def default_metrics(info: DataInfo, inception_weights: str | None) -> list[str]:
    """2D mixtures: mode coverage and the density plot; images: Inception metrics when its
    weights are on disk, else the offline classifier ones."""
    if info.kind == "points":
        return ["modes", "kde"]
    from ganexp.metrics.inception import INCEPTION_FILE

    have = inception_weights or (Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE).is_file()
    return ["fid", "kid", "is"] if have else ["fid_clf", "kid_clf", "is_clf", "pr_clf"]


def metric_nodes(names: list[str]) -> DictConfig:
    """The conf/metrics entries for ``names``, as composition would place them."""
    nodes = {}
    for n in names:
        text = (resources.files("ganexp.conf") / "metrics" / f"{n}.yaml").read_text()
        nodes.update(OmegaConf.to_container(OmegaConf.create(text)))
    return OmegaConf.create(nodes)


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], Path]:
    """Score ``cfg.ckpt``; return the metrics and the JSON path they were written to."""
    from ganexp.load import build_eval
    from ganexp.engine import Sampler

    path = checkpoint.resolve(cfg.ckpt)
    nodes = (cfg.get("eval") or {}).get("metrics") or {}
    if not nodes:
        info = DataInfo.from_dict(checkpoint.load(path)["data_info"])
        nodes = metric_nodes(default_metrics(info, cfg.inception_weights))
    t0 = time.perf_counter()
    G, latent, state, data, metrics = build_eval(cfg, nodes)
    sampler = Sampler(G, latent, cfg.batch_size)
    step = int(state["step"])
    values: dict[str, float] = {}
    out = Path(cfg.out) if cfg.out else path.parent.parent / "eval" / result_name(path.stem, step, list(nodes), cfg.num_samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    for m in metrics:
        values.update(m(sampler, step))
        for tag, fig in (m.figures(sampler, step) if hasattr(m, "figures") else {}).items():
            fig.savefig(out.with_name(f"{out.stem}_{tag}.png"))
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


@hydra.main(config_path="pkg://ganexp.conf", config_name="eval", version_base="1.3")
def eval_main(cfg: DictConfig) -> None:
    try:
        values, out = evaluate(cfg)
    except GanexpError as e:  # escaped: messages hold option syntax such as metrics=[fid_clf]
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    print_table(values, cfg.ckpt)
    console.print(f"wrote {out}", highlight=False)
