"""Self-attention over a feature map (Zhang et al. 2019, SAGAN), placeable in a model at a
chosen resolution."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ganexp.errors import ConfigError


class SelfAttention(nn.Module):
    """SAGAN's block (Zhang et al. 2019, Sec. 3, Eq. 1-3): with 1x1 convolutions f (query) and
    g (key) to C/8 channels and h (value) to C, each position i attends to every position j with
    beta_ij = softmax_j(f(x_i) . g(x_j)) and o_i = sum_j beta_ij h(x_j); the output is
    gamma * o + x with a learned gamma that starts at 0, so the block begins as the identity
    and the network learns how much non-local evidence to use."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 8)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.query(x).flatten(2), self.key(x).flatten(2), self.value(x).flatten(2)  # (B, C', N), (B, C, N)
        beta = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N queries, N keys)
        o = v @ beta.transpose(1, 2)  # o[:, :, i] = sum_j beta[i, j] v[:, :, j]
        return x + self.gamma * o.view(b, c, h, w)


def check_attention(at: int, places: list[int], who: str, resolution: int, model: str = "dcgan") -> None:
    """``at`` (0: none) must be the resolution of one of the model's feature maps."""
    if at and at not in places:
        raise ConfigError(f"{who}.attention={at} is not a feature-map resolution of {model}'s {who} at {resolution} px; "
                          f"choose one of {', '.join(map(str, sorted(places)))} (0: none)")
