"""The CUDA path's defects found by reading it (issue 22), each checked on the CPU: compiled D's
graph count, penalties in fp32 under bf16, device=cuda:N, the replay buffer across train.amp,
the RNG state of checkpoints, sync BN with a gradient penalty, train.compile_mode."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from ganexp.build import build_run
from ganexp.engine import checkpoint, train
from ganexp.errors import ConfigError
from tests.conftest import make_cfg


def _train(overrides, out_dir):
    run = build_run(make_cfg(overrides, out_dir))
    run.final = train(run)
    return run


def _frames(fn):
    """Frames dynamo compiled per function name while ``fn`` ran."""
    from torch._dynamo.utils import counters

    counters.clear()
    fn()
    return dict(counters["frames"]), dict(counters["recompiles"]) if "recompiles" in counters else {}


def test_compiled_bf16_run_compiles_d_once_per_call_site(tmp_path, monkeypatch):
    """fp32 reals and bf16 fakes used to be two graphs of D's forward (plus the G step's): reals are
    cast to the amp dtype now, so D's forward has one graph in the D step and one in the G step;
    a second run in the same process starts from a reset dynamo (no inherited recompiles)."""
    import torch._dynamo

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))  # guards are dynamo's
    seen = []
    for i, extra in enumerate([[], ["train.batch_size=6"]]):  # another batch size: a sweep in one process
        torch._dynamo.reset()
        compiled_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        _train(["train.amp=bf16", "train.compile=true", "train.steps=3", *extra], tmp_path / f"run{i}")
        seen.append(torch._dynamo.utils.counters["stats"]["unique_graphs"] - compiled_before)
        # G: one graph; D: the D step's and the G step's (loss, hooks and optimizer run eagerly)
        assert seen[-1] <= 3, seen
    assert seen[0] == seen[1]  # the second run did not recompile on top of the first's graphs


def test_penalties_are_taken_in_fp32_under_bf16_autocast():
    from ganexp.losses.critic import gradient_penalty, r1_penalty

    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(1, 8, 3), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(8 * 6 * 6, 1))
    fwd = lambda x, y=None: D(x)  # noqa: E731  (ganexp's D(x, y) signature)
    real, fake = torch.randn(16, 1, 8, 8), torch.randn(16, 1, 8, 8).bfloat16()
    ref_r1 = r1_penalty(fwd, real)
    torch.manual_seed(1)
    ref_gp = gradient_penalty(fwd, real, fake.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r1 = r1_penalty(fwd, real)
        torch.manual_seed(1)
        gp = gradient_penalty(fwd, real, fake)
    assert r1.dtype == gp.dtype == torch.float32
    # in bf16 the double backward differs by ~1e-2 relative; in fp32 it is the same computation
    assert torch.allclose(r1, ref_r1, rtol=1e-6) and torch.allclose(gp, ref_gp, rtol=1e-6)
    r1.backward()
    grads = [p.grad for p in D.parameters() if p.grad is not None]  # the last bias has none: R1 ignores it
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_cuda_n_beyond_the_machine_is_one_line(monkeypatch):
    from ganexp.engine.launch import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError) as e:
        resolve_device("cuda:1")
    assert str(e.value) == "device=cuda:1 but this machine has 1 CUDA device (cuda:0); use one of them or device=cuda"
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # no CUDA call made: validated by count alone


def test_replay_buffer_resumes_under_another_amp(tmp_path):
    replay = ["tricks=[experience_replay]", "tricks.experience_replay.capacity=16"]
    run = _train([*replay, "train.amp=bf16", "train.steps=2"], tmp_path / "run")
    buf = next(t for t in run.tricks if t.name == "experience_replay")
    assert buf.x.dtype == torch.float32  # the first fake was bf16
    resumed = _train([*replay, "train.amp=none", "train.steps=4", f"resume={tmp_path / 'run'}"], tmp_path / "run")
    assert resumed.final["status"] == "done" and resumed.final["step"] == 4


def test_checkpoint_rng_holds_only_the_runs_own_device(monkeypatch):
    def no_cuda(*a, **k):
        raise AssertionError("a CPU run touched CUDA")

    for name in ("get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all", "is_available"):
        monkeypatch.setattr(torch.cuda, name, no_cuda)
    cpu = torch.device("cpu")
    s = checkpoint.rng_state(cpu)
    assert set(s) == {"torch"}
    torch.manual_seed(3)
    first = torch.rand(3)
    torch.manual_seed(3)
    saved = checkpoint.rng_state(cpu) | {"cuda": [torch.zeros(16, dtype=torch.uint8)] * 4}  # an older, 4-GPU checkpoint
    torch.rand(5)
    checkpoint.set_rng_state(saved, cpu)  # the GPUs' states are ignored on the CPU
    assert torch.equal(torch.rand(3), first)
    # on CUDA the run's device takes its own state, or the last one an older checkpoint has
    assert checkpoint.cuda_state({"cuda": ["a", "b"]}, 1) == "b" and checkpoint.cuda_state({"cuda": ["a"]}, 3) == "a"
    assert checkpoint.cuda_state({}, 0) is None


@pytest.mark.parametrize("trick, name", [("r1", "r1"), ("gradient_penalty", "gradient_penalty")])
def test_sync_bn_with_a_gradient_penalty_is_refused(trick, name, tmp_path):
    from ganexp.build.build import _sync_bn
    from ganexp.engine.distributed import Dist

    cfg = make_cfg(["train.sync_bn=true"], tmp_path / "run")
    hook = type("Penalty", (), {"name": name, "double_backward": True})()
    with pytest.raises(ConfigError) as e:
        _sync_bn(cfg, Dist(0, 2, 0, torch.device("cuda", 0)), nn.BatchNorm1d(2), nn.BatchNorm1d(2), [], (hook,))
    assert str(e.value).startswith(f"train.sync_bn=true cannot train with {name}: ") and "\n" not in str(e.value)
    from ganexp.losses import WGANGP
    from ganexp.tricks.penalties import R1

    assert R1.double_backward and WGANGP.double_backward  # what build_run hands _sync_bn


def test_compile_mode_is_offered_and_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    run = build_run(make_cfg(["train.compile=true", "train.compile_mode=reduce-overhead"], tmp_path / "a"))
    assert run.compile_mode == "reduce-overhead"
    with pytest.raises(ConfigError, match=r"^train.compile_mode=reduce-overhead needs train.compile=true$"):
        build_run(make_cfg(["train.compile_mode=reduce-overhead"], tmp_path / "b"))
    with pytest.raises(ConfigError, match=r"^train.compile_mode must be one of default, reduce-overhead, max-autotune"):
        build_run(make_cfg(["train.compile=true", "train.compile_mode=fast"], tmp_path / "c"))
