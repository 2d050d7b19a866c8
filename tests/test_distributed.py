"""Data-parallel training (ganexp/distributed.py): 2-process gloo runs on the CPU, spawned with
torch.multiprocessing on a free port, each with a deadline so a hang fails the test instead of CI."""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ganexp.engine import checkpoint
from ganexp.errors import ConfigError, GanexpError
from tests.conftest import make_cfg

#: An MLP GAN without batch norm on the 8-Gaussian ring: a 2-rank run must equal one process.
RING = {"dataset": "ring8", "model": "mlp", "train.batch_size": 16, "train.steps": 6, "train.log_every": 3,
        "train.sample_every": 0, "train.ckpt_every": 3, "seed": 3}


def ring(*extra: str) -> list[str]:
    """RING's overrides, with ``key=value`` items replacing RING's own."""
    given = dict(e.split("=", 1) for e in extra)
    return [f"{k}={v}" for k, v in {**RING, **given}.items()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_on_first_log(out_dir: Path) -> None:
    """SIGTERM to this process (rank 1) once rank 0 logged a step: a stop request in mid-training."""
    deadline = time.time() + 60
    while not (out_dir / "stats.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker(rank: int, world: int, port: int, overrides: list[str], out_dir: Path, results: Path, sigterm: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from ganexp.build import build_run
    from ganexp.engine import train

    result: dict = {"rank": rank}
    try:
        run = build_run(make_cfg(overrides, out_dir))
        if rank == sigterm:
            threading.Thread(target=_stop_on_first_log, args=(out_dir,), daemon=True).start()
        result["final"] = train(run)
        result["G"], result["D"] = run.G.state_dict(), run.D.state_dict()
        # parameters (batch-norm statistics are each rank's own between DDP's broadcasts from rank 0)
        result["params"] = {f"{who}.{n}": p.detach().clone() for who, m in [("G", run.G), ("D", run.D)]
                            + [(t.name, t.ema) for t in run.tricks if t.name == "ema"] for n, p in m.named_parameters()}
    except GanexpError as e:
        result["error"], result["type"] = str(e), type(e).__name__
    torch.save(result, results / f"rank{rank}.pt")


def spawn(overrides: list[str], out_dir: Path, results: Path, world: int = 2, sigterm: int = -1,
          timeout: float = 120) -> list[dict]:
    """Runs ``build_run`` + ``train`` on ``world`` gloo ranks; their results, by rank."""
    results.mkdir(parents=True, exist_ok=True)
    ctx = mp.start_processes(_worker, args=(world, _free_port(), overrides, out_dir, results, sigterm),
                             nprocs=world, join=False, start_method="spawn")
    deadline = time.time() + timeout
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {world}-rank run did not end within {timeout} s")
    return [torch.load(results / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _train_one(overrides: list[str], out_dir: Path):
    from ganexp.build import build_run
    from ganexp.engine import train

    run = build_run(make_cfg(overrides, out_dir))
    run.final = train(run)
    return run


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_two_ranks_equal_one_process_write_once_and_resume_on_one(tmp_path):
    scored = ("metrics=[modes]", "eval.every=6", "eval.num_samples=500")  # evaluated at the end, by rank 0
    r0, r1 = spawn(ring(*scored), tmp_path / "ddp", tmp_path / "results")
    assert "error" not in r0 and "error" not in r1, (r0.get("error"), r1.get("error"))
    for k in ("G", "D"):  # DDP keeps the ranks' weights identical, bit for bit
        for name in r0[k]:
            assert torch.equal(r0[k][name], r1[k][name]), name

    one = _train_one(ring(*scored), tmp_path / "one")  # the same global batch and seed on one process
    _close(r0["G"], one.G.state_dict())
    _close(r0["D"], one.D.state_dict())
    evaluated = {k: v for k, v in one.final.items() if k.startswith("metrics/")}
    assert evaluated and {k: r0["final"][k] for k in evaluated} == pytest.approx(evaluated, rel=1e-4)

    # rank 0 alone wrote the run folder: exactly what a one-process run writes
    def names(d: Path) -> list[str]:  # TensorBoard names its file by time, host and process
        return sorted("events" if p.name.startswith("events.out") else p.relative_to(d).as_posix() for p in d.rglob("*"))

    assert names(tmp_path / "ddp") == names(tmp_path / "one")
    saved = checkpoint.load(tmp_path / "ddp")
    assert saved["step"] == 6 and "shared" in saved["rng"]

    # the 2-rank checkpoint continues on one process, the same as one process all along
    resumed = _train_one(ring(*scored, "train.steps=9", f"resume={tmp_path / 'ddp'}"), None)
    straight = _train_one(ring(*scored, "train.steps=9"), tmp_path / "straight")
    _close(resumed.G.state_dict(), straight.G.state_dict())
    _close(resumed.D.state_dict(), straight.D.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    # the stateful tricks and every gradient penalty (double backward through the plain D, see Players)
    ["tricks=[gradient_penalty,dragan,r1,historical_averaging,ema,experience_replay,checkpoint_swap]",
     "tricks.checkpoint_swap.every=2", "tricks.checkpoint_swap.prob=0.5", "tricks.experience_replay.capacity=16"],
    # DCGAN with batch norm on images, a penalty through it
    ["dataset=digits", "model=dcgan", "tricks=[r1,ema]", "train.batch_size=8", "train.steps=4"],
])
def test_tricks_and_penalties_train_under_ddp(tmp_path, extra):
    r0, r1 = spawn(ring(*extra), tmp_path / "run", tmp_path / "results")
    assert "error" not in r0 and "error" not in r1, (r0.get("error"), r1.get("error"))
    assert any(k.startswith("ema.") for k in r0["params"])  # the EMA generator too (it samples and is saved)
    for name, p in r0["params"].items():
        assert torch.equal(p, r1["params"][name]), name
    assert r0["final"]["status"] == "done"


@pytest.mark.slow
@pytest.mark.parametrize("extra, message", [
    (["train.batch_size=15"], "train.batch_size=15 is the global batch and must be divisible by the 2 ranks"),
    (["tricks=[unrolled]"], "unrolled cannot run under DDP"),
])
def test_refusals_are_one_line_on_every_rank(tmp_path, extra, message):
    results = spawn(ring(*extra), tmp_path / "run", tmp_path / "results")
    for r in results:
        assert message in r["error"] and "\n" not in r["error"]
    assert results[0]["type"] == "ConfigError"


@pytest.mark.slow
def test_sigterm_on_one_rank_stops_all_with_one_checkpoint(tmp_path):
    out = tmp_path / "run"
    r0, r1 = spawn(ring("train.steps=100000", "train.log_every=5", "train.ckpt_every=0"), out,
                   tmp_path / "results", sigterm=1)
    assert r0["type"] == r1["type"] == "RunInterrupted"
    assert r0["error"] == r1["error"]  # both stopped at the same step
    step = checkpoint.load(out)["step"]
    assert f"interrupted at step {step} by SIGTERM;" in r0["error"] and 0 < step < 100000
    import json

    assert json.loads((out / "metrics.json").read_text())["status"] == "interrupted"


# ---------------------------------------------------------------- no process group needed


def _dist(rank: int, world: int, seed: int = 0):
    from ganexp.engine.distributed import Dist

    d = Dist(rank, world, 0, torch.device("cpu"))
    d.shared = torch.Generator().manual_seed(seed)
    return d


def test_device_data_ranks_draw_disjoint_slices_of_one_global_batch():
    from ganexp.data.base import DataInfo, TensorData

    x = torch.arange(1000.0)[:, None]
    ranks = [TensorData(x, None, DataInfo("points", (1,))).shard(_dist(r, 4)) for r in range(4)]
    torch.manual_seed(0)
    single = TensorData(x, None, DataInfo("points", (1,))).sample(32)[0]
    parts = [d.sample(8)[0] for d in ranks]
    assert torch.equal(torch.cat(parts), single)  # the union is the one-process batch, in rank order


def test_streamed_data_ranks_stream_disjoint_parts_reshuffled_each_pass():
    from ganexp.data.base import DataInfo, LoaderData, _forever

    ds = torch.utils.data.TensorDataset(torch.arange(40), torch.zeros(40))
    ranks = [LoaderData(ds, DataInfo("points", (1,)), num_workers=0).shard(_dist(r, 2), seed=1) for r in range(2)]
    seen = [set(map(int, d.sampler)) for d in ranks]
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 40
    it = _forever(ranks[0]._loader(20))
    first, second = next(it)[0], next(it)[0]  # two passes of one batch each
    assert sorted(first.tolist()) == sorted(seen[0]) and not torch.equal(first, second)


def test_batch_not_divisible_is_one_line():
    with pytest.raises(ConfigError, match=r"^train.batch_size=10 is the global batch and must be divisible by the 4 ranks"):
        _dist(0, 4).local_batch(10)


def test_unrolled_refuses_ddp_in_one_line(tmp_path):
    from ganexp.build import build_run

    run = build_run(make_cfg(ring("tricks=[unrolled]"), tmp_path / "run"))
    run.schedule.ranks = 2
    with pytest.raises(ConfigError, match=r"^unrolled cannot run under DDP: [^\n]*$"):
        run.tricks[0].setup(run.setup_context())


def test_launch_env_reads_torchrun_and_slurm_steps(monkeypatch):
    from ganexp.engine.launch import launch_env

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NTASKS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "16")
    assert launch_env() is None  # a batch script with --ntasks=16 is still one process
    monkeypatch.setenv("SLURM_PROCID", "13")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "16")
    monkeypatch.setenv("SLURM_LOCALID", "5")
    assert launch_env() == (13, 16, 5)  # a task of an srun step (submitit: one per GPU)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch_env() == (3, 4, 1)  # torchrun's variables win
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launch_env() is None


def test_other_ranks_make_no_hydra_folder(monkeypatch):
    from ganexp.cli import argv as cli

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = cli.launch_args(["out_dir=/somewhere", "hydra.run.dir=/somewhere"])
    assert args[-3:] == list(cli.FOLLOWER) and "hydra.run.dir=/somewhere" not in args
    with pytest.raises(SystemExit):
        cli.launch_args(["-m", "seed=0,1"])


@pytest.mark.slow
def test_torchrun_makes_one_run_folder(tmp_path):
    """The real launch: `torchrun -m ganexp train` with Hydra's time-stamped folder."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ganexp", "train",
           "device=cpu", "metrics=[]", *ring()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "train").iterdir())
    assert len(runs) == 1 and sorted(q.name for q in tmp_path.iterdir()) == ["outputs"]
    assert (runs[0] / ".hydra").is_dir() and (runs[0] / "train.log").is_file()
    assert checkpoint.load(runs[0])["step"] == 6
    assert p.stdout.count("run folder:") == 1  # one voice: rank 0's


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_compiled_run_trains_and_loads_on_cpu(tmp_path):
    from ganexp.build.factory import build_models
    from ganexp.data import DataInfo

    run = _train_one(["device=cuda", "train.amp=bf16", "train.compile=true", "train.steps=4"], tmp_path / "run")
    assert run.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32  # train.tf32: on by default
    state = checkpoint.load(tmp_path / "run")
    assert state["step"] == 4
    from omegaconf import OmegaConf

    G, D, _, _ = build_models(OmegaConf.create(state["config"]), DataInfo.from_dict(state["data_info"]), torch.device("cpu"))
    G.load_state_dict(state["G"])
    D.load_state_dict(state["D"])
    z = torch.randn(2, state["latent"]["dim"])
    assert torch.isfinite(G(z, None)).all()


def test_channels_last_and_fused_adam_train(tmp_path):
    run = _train_one(["train.channels_last=true", "optimizer.g.fused=true", "optimizer.d.fused=true"], tmp_path / "run")
    conv = next(m for m in run.D.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert run.opt_g.defaults["fused"] is True and run.opt_d.defaults["fused"] is True
    assert checkpoint.load(tmp_path / "run")["step"] == 4


def test_sync_bn_converts_batch_norm_on_cuda_ranks_and_is_refused_on_cpu(tmp_path):
    from ganexp.build.build import _sync_bn
    from ganexp.engine.distributed import Dist, Single

    cfg = make_cfg(["train.sync_bn=true"], tmp_path / "run")
    run = _train_one(["train.steps=1"], tmp_path / "one")  # DCGAN: batch norm in G and D
    notes: list[str] = []
    keys = set(run.G.state_dict())
    G, D = _sync_bn(cfg, Dist(0, 2, 0, torch.device("cuda", 0)), run.G, run.D, notes)
    kinds = {type(m) for m in [*G.modules(), *D.modules()]}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
    assert set(G.state_dict()) == keys  # checkpoints stay interchangeable (the conversion works in place)
    with pytest.raises(ConfigError, match=r"^train.sync_bn=true needs CUDA"):
        _sync_bn(cfg, _dist(0, 2), run.G, run.D, notes)
    _sync_bn(cfg, Single(torch.device("cpu")), run.G, run.D, notes)  # one process: nothing to synchronise
    assert notes == ["note: train.sync_bn=true has no effect on one process (batch norm already sees the whole batch)"]
