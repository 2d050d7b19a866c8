"""Every fixed point of ganexp/hooks.py, as the engine calls it in a real run: a spy trick
records each call with the tensors it got, in order, and returns values the test can trace
(so a call whose result the engine ignores fails too)."""
from __future__ import annotations

import copy

import pytest
import torch

from ganexp.engine import checkpoint
from ganexp.build import build_run
from ganexp.engine import train
from ganexp.hooks import Hook, Targets
from tests.conftest import make_cfg, read_events

D_STEPS, G_STEPS, STEPS = 2, 2, 4
#: A tiny 2D run: a checkpoint and a log every 2 steps, no sample plots (they call D too).
BASE = ["dataset=ring8", "model=mlp", f"optimizer.d_steps={D_STEPS}", f"optimizer.g_steps={G_STEPS}",
        f"train.steps={STEPS}", "train.log_every=2", "train.ckpt_every=2", "train.sample_every=0"]
#: What the spy's on_targets returns: none of the losses' defaults, so a dropped result shows.
SPY_TARGETS = Targets(0.75, 0.25, 0.6)


def _params(m: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


class Spy(Hook):
    name = "spy"

    def __init__(self, run):
        self.run, self.calls, self.loaded = run, [], None

    def _log(self, method, step, **kw):
        self.calls.append((method, step, kw))

    def on_real(self, x, y, step):
        out = x + 0.0  # a new tensor: D must see this one, not the batch before the hook
        self._log("on_real", step, x=x, out=out)
        return out, y

    def on_fake(self, x, y, step):
        out = x + 0.0
        self._log("on_fake", step, x=x, out=out)
        return out, y

    def on_d_input(self, x, step):
        out = x + 0.0
        self._log("on_d_input", step, x=x, out=out)
        return out

    def on_targets(self, t, step):
        self._log("on_targets", step, t=copy.copy(t))
        return SPY_TARGETS

    def on_d_loss(self, loss, ctx):
        self._log("on_d_loss", step=ctx.step, loss=loss.detach().clone(), ctx=ctx, D=_params(self.run.D))
        return loss

    def on_g_loss(self, loss, ctx):
        self._log("on_g_loss", step=ctx.step, loss=loss.detach().clone(), ctx=ctx, G=_params(self.run.G))
        return loss

    def after_d_step(self, step):
        self._log("after_d_step", step, D=_params(self.run.D))

    def after_g_step(self, step):
        self._log("after_g_step", step, G=_params(self.run.G))

    def sampling_generator(self, G):
        self.sampler = copy.deepcopy(G)
        with torch.no_grad():
            next(self.sampler.parameters()).add_(1.0)  # tell it apart from G in the checkpoint
        self._log("sampling_generator", None, G=G)
        return self.sampler

    def scalars(self, step):
        self._log("scalars", step)
        return {"calls": float(len(self.calls))}

    def state_dict(self):
        self._log("state_dict", None)
        return {"calls": torch.tensor(len(self.calls))}

    def load_state_dict(self, state):
        self._log("load_state_dict", None)
        self.loaded = state


def spy_run(loss: str, out, *extra: str):
    run = build_run(make_cfg([f"loss={loss}", *BASE, *extra], out))
    spy = Spy(run)
    run.tricks.append(spy)
    d_inputs = []  # what D's forward actually receives
    run.D.register_forward_pre_hook(lambda m, args: d_inputs.append(args[0]))
    return run, spy, d_inputs


def expected_calls(start: int, stop: int, targets: bool) -> list[tuple[str, int | None]]:
    t = [("on_targets",)] if targets else []
    seq = []
    for s in range(start, stop):
        for _ in range(D_STEPS):
            seq += [("on_real",), ("on_fake",), ("on_d_input",), ("on_d_input",), *t, ("on_d_loss",), ("after_d_step",)]
        for _ in range(G_STEPS):
            seq += [("on_d_input",), *t, ("on_g_loss",), ("after_g_step",)]
        seq = [(c[0], s) if len(c) == 1 else c for c in seq]
        if (s + 1) % 2 == 0:  # log and checkpoint every 2 steps: scalars and state at the step just done
            seq += [("scalars", s + 1), ("state_dict", None)]
    return seq


@pytest.mark.parametrize("loss", ["nsgan", "lsgan", "wgan"])
def test_every_fixed_point_is_called_in_order_with_the_right_tensors(loss, tmp_path):
    run, spy, d_inputs = spy_run(loss, tmp_path)
    train(run)
    label_loss = loss != "wgan"
    assert [(m, s) for m, s, _ in spy.calls] == [("sampling_generator", None), *expected_calls(0, STEPS, label_loss)]
    assert spy.calls[0][2]["G"] is run.G

    # D sees exactly what on_d_input returned, in the engine's order (the loss adds no D call)
    returned = [kw["out"] for m, _, kw in spy.calls if m == "on_d_input"]
    assert len(d_inputs) == len(returned) == STEPS * (2 * D_STEPS + G_STEPS)
    assert all(a is b for a, b in zip(d_inputs, returned))

    calls = iter(spy.calls[1:])

    def take(method):
        m, _, kw = next(calls)
        assert m == method
        return kw

    B = run.schedule.batch_size
    for s in range(STEPS):
        for i in range(D_STEPS):
            real, fake, d_real_in, d_fake_in = take("on_real"), take("on_fake"), take("on_d_input"), take("on_d_input")
            # on_d_input: first the real batch after on_real, then the detached fake after on_fake
            assert d_real_in["x"] is real["out"] and real["x"].shape == (B, 2)
            assert d_fake_in["x"] is fake["out"] and not fake["x"].requires_grad and fake["x"].shape == (B, 2)
            t = take("on_targets")["t"] if label_loss else None
            d_loss = take("on_d_loss")
            ctx = d_loss["ctx"]
            assert ctx.step == s and ctx.real is real["out"] and ctx.fake is fake["out"]
            if label_loss:  # the loss's own targets in, and the ones on_targets returned used
                assert (t.real, t.fake, t.gen) == run.loss.default_targets
                assert not torch.allclose(run.loss.d_loss(ctx.d_real, ctx.d_fake, SPY_TARGETS),
                                          run.loss.d_loss(ctx.d_real, ctx.d_fake, t))
            want = run.loss.d_loss(ctx.d_real, ctx.d_fake, SPY_TARGETS if label_loss else None)
            torch.testing.assert_close(d_loss["loss"], want.detach())
            # after_d_step comes after D's optimizer step
            assert any(not torch.equal(a, b) for a, b in zip(d_loss["D"], take("after_d_step")["D"]))
        for j in range(G_STEPS):
            g_in = take("on_d_input")
            # G's step: the fake with its graph to G; the first one reuses the last D step's forward
            assert g_in["x"].requires_grad and g_in["x"].grad_fn is not None
            assert torch.equal(g_in["x"], fake["x"]) == (j == 0)
            t = take("on_targets")["t"] if label_loss else None
            if label_loss:
                assert (t.real, t.fake, t.gen) == run.loss.default_targets
            g_loss = take("on_g_loss")
            gctx = g_loss["ctx"]
            assert gctx.step == s and gctx.fake is g_in["x"] and gctx.d_real is None
            want = run.loss.g_loss(gctx.d_fake, SPY_TARGETS if label_loss else None)
            torch.testing.assert_close(g_loss["loss"], want.detach())
            assert any(not torch.equal(a, b) for a, b in zip(g_loss["G"], take("after_g_step")["G"]))
        if (s + 1) % 2 == 0:
            take("scalars"), take("state_dict")

    # scalars are logged under trick/spy/..., state_dict goes into ckpt/last.pt
    logged = [(e.step, e.value) for e in read_events(run.out_dir).Scalars("trick/spy/calls")]
    at = {s: i for i, (m, s, _) in enumerate(spy.calls) if m == "scalars"}
    assert logged == [(2, float(at[2] + 1)), (4, float(at[4] + 1))]
    state = checkpoint.load(run.out_dir)
    assert int(state["hooks"]["spy"]["calls"]) == len(spy.calls)  # the last call is the final checkpoint's
    # the sampling generator the hook returned is the one saved for sampling
    assert all(torch.equal(state["G_sample"][k], v) for k, v in spy.sampler.state_dict().items())
    assert not torch.equal(state["G_sample"][next(iter(state["G"]))], state["G"][next(iter(state["G"]))])


def test_resume_loads_the_hook_state_before_the_first_step(tmp_path):
    run, spy, _ = spy_run("nsgan", tmp_path)
    train(run)
    saved = checkpoint.load(tmp_path)["hooks"]["spy"]
    resumed, spy2, _ = spy_run("nsgan", tmp_path / "other", "train.steps=6", f"resume={tmp_path}")
    train(resumed)
    assert spy2.calls[0][0] == "load_state_dict" and torch.equal(spy2.loaded["calls"], saved["calls"])
    assert [(m, s) for m, s, _ in spy2.calls[1:]] == [("sampling_generator", None), *expected_calls(STEPS, 6, True)]
