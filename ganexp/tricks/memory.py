"""Tricks with memory of the past (ganhacks #8, "stability tricks from RL"): a replay buffer of
old fakes and training against old snapshots of G or D."""
from __future__ import annotations

import random

import torch
from torch import Tensor, nn

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext


class ExperienceReplay(Hook):
    """Experience replay (Shrivastava et al. 2017, Sec. 3.2, "history of refined images";
    Salimans et al. 2016 notes; ganhacks #8): a buffer of up to ``capacity`` past fakes. In
    each D step the last ``ratio`` of the fake batch is replaced by samples drawn from the
    buffer, then the step's fakes enter it (random slots once it is full)."""

    name = "experience_replay"

    def __init__(self, capacity: int = 1024, ratio: float = 0.5):
        require(capacity >= 1, f"experience_replay.capacity must be >= 1, got {capacity}")
        require(0.0 <= ratio < 1.0, f"experience_replay.ratio must be in [0, 1), got {ratio}")
        self.capacity, self.ratio = capacity, ratio
        self.x: Tensor | None = None
        self.y: Tensor | None = None
        self.count = 0  # fakes pushed so far (a Python int: no device sync to know the fill)

    def setup(self, ctx: SetupContext) -> None:
        self.k, self.device = round(self.ratio * ctx.local_batch), ctx.device

    def on_fake(self, x: Tensor, y: Tensor | None, step: int) -> tuple[Tensor, Tensor | None]:
        if self.x is None:  # fp32 whatever train.amp is: a resume may change it
            self.x = x.new_zeros(self.capacity, *x.shape[1:], dtype=torch.float32)
            self.y = None if y is None else y.new_zeros(self.capacity)
        out_x, out_y = x, y
        k, filled = min(self.k, x.shape[0]), min(self.count, self.capacity)
        if k and filled >= k:
            idx = torch.randint(filled, (k,), device=x.device)
            out_x = torch.cat([x[:x.shape[0] - k], self.x[idx].to(x.dtype)])
            out_y = None if y is None else torch.cat([y[:y.shape[0] - k], self.y[idx]])
        self._push(x, y)
        return out_x, out_y

    def _push(self, x: Tensor, y: Tensor | None) -> None:
        free = max(self.capacity - self.count, 0)
        head = min(free, x.shape[0])
        slots = torch.arange(self.count, self.count + head, device=x.device)
        if head < x.shape[0]:
            slots = torch.cat([slots, torch.randint(self.capacity, (x.shape[0] - head,), device=x.device)])
        self.x[slots] = x.to(self.x.dtype)
        if y is not None:
            self.y[slots] = y
        self.count += x.shape[0]

    def scalars(self, step: int) -> dict[str, float]:
        return {"fill": min(self.count, self.capacity) / self.capacity}

    def state_dict(self) -> dict:
        return {"count": self.count} | ({} if self.x is None else {"x": self.x}) | ({} if self.y is None else {"y": self.y})

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state["count"])
        self.x, self.y = (None if state.get(k) is None else state[k].to(self.device) for k in ("x", "y"))
        if self.x is not None:  # a checkpoint of a bf16 run stored bf16 fakes
            self.x = self.x.float()


def _tensors(m: nn.Module) -> list[Tensor]:
    """Parameters and buffers as tensors sharing the module's storage (copy_ into them changes the module)."""
    return list(m.state_dict().values())


@torch.no_grad()
def _copy(dst: list[Tensor], src: list[Tensor]) -> None:
    torch._foreach_copy_(dst, src)


class CheckpointSwap(Hook):
    """Training against old checkpoints (ganhacks #8; cf. Pfau & Vinyals 2016 on GANs as
    actor-critic): every ``every`` steps G and D are snapshotted (the last ``keep`` are kept).
    With probability ``prob`` a step draws one snapshot and D trains on the fakes of the old G
    (``swap: g``), G trains against the old D (``swap: d``), or both; the current weights come
    back right after. D's optimizer only ever updates the current D, and G's the current G."""

    name = "checkpoint_swap"
    allows_fake_reuse = False  # G changes between the D step and the G step

    def __init__(self, every: int = 500, keep: int = 5, prob: float = 0.1, swap: str = "both", seed: int = 0):
        require(every >= 1 and keep >= 1, f"checkpoint_swap needs every >= 1 and keep >= 1, got {every}, {keep}")
        require(0.0 <= prob <= 1.0, f"checkpoint_swap.prob must be in [0, 1], got {prob}")
        require(swap in ("g", "d", "both"), f"checkpoint_swap.swap must be g, d or both; got '{swap}'")
        self.every, self.keep, self.prob, self.swap = every, keep, prob, swap
        self.rng = random.Random(seed)
        self.snapshots: list[dict[str, list[Tensor]]] = []
        self.swaps = 0
        self._wanted = {"g": ("G",), "d": ("D",), "both": ("G", "D")}[swap]
        self._step, self._active, self._saved = -1, None, {}
        self._d_done = self._g_done = 0

    def setup(self, ctx: SetupContext) -> None:
        self.models, self.device = {"G": ctx.G, "D": ctx.D}, ctx.device
        # the old D comes in after this hook's after_d_step: later ones would act on it, not on the current D
        later = [t.name for t in ctx.tricks[ctx.tricks.index(self) + 1:] if type(t).after_d_step is not Hook.after_d_step]
        require(not later, f"list checkpoint_swap after {', '.join(later)}: they act after D's step and would see the old D")
        self.d_steps, self.g_steps = ctx.d_steps, ctx.g_steps

    def _swap_in(self, who: str) -> None:
        if self._active is not None and who in self._wanted and who not in self._saved:
            cur = _tensors(self.models[who])
            self._saved[who] = [t.clone() for t in cur]
            _copy(cur, self.snapshots[self._active][who])

    def _restore(self, who: str) -> None:
        if who in self._saved:  # copy, then forget: an interrupt between the two loses nothing
            _copy(_tensors(self.models[who]), self._saved[who])
            del self._saved[who]

    def restore_live(self) -> None:
        self._restore("G")
        self._restore("D")

    def on_real(self, x: Tensor, y: Tensor | None, step: int) -> tuple[Tensor, Tensor | None]:
        if step != self._step:  # first D step of a new step: decide whether to swap
            self._step, self._d_done, self._g_done = step, 0, 0
            swap = bool(self.snapshots) and self.rng.random() < self.prob
            self._active = self.rng.randrange(len(self.snapshots)) if swap else None
            self.swaps += swap
        self._swap_in("G")  # D's fakes come from the old G
        return x, y

    def after_d_step(self, step: int) -> None:
        self._d_done += 1
        if self._d_done == self.d_steps:
            self._restore("G")
            self._swap_in("D")  # G trains against the old D

    def after_g_step(self, step: int) -> None:
        self._g_done += 1
        if self._g_done < self.g_steps:
            return
        self._restore("D")
        if (step + 1) % self.every == 0:
            self.snapshots = [*self.snapshots, {k: [t.clone() for t in _tensors(m)] for k, m in self.models.items()}][-self.keep:]

    def scalars(self, step: int) -> dict[str, float]:
        return {"snapshots": len(self.snapshots), "swaps": self.swaps}

    def state_dict(self) -> dict:
        return {"snapshots": self.snapshots, "swaps": self.swaps, "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.snapshots = [{k: [t.to(self.device) for t in ts] for k, ts in s.items()} for s in state["snapshots"]]
        self.swaps = int(state["swaps"])
        self.rng.setstate(state["rng"])
