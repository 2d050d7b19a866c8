"""Each loss against numbers computed by hand on fixed logits."""
import pytest
import torch
from torch import nn

from ganexp.hooks import StepContext
from ganexp.losses import GAN, LSGAN, NSGAN, WGAN, WGANGP, Hinge
from tests.conftest import Linear2D

D_REAL = torch.tensor([2.0, -1.0])
D_FAKE = torch.tensor([0.5, -1.5])

# -log sigmoid(2) = 0.126928, -log sigmoid(-1) = 1.313262            -> real term 0.720095
# -log(1 - sigmoid(0.5)) = 0.974077, -log(1 - sigmoid(-1.5)) = 0.201413 -> fake term 0.587745
# -log sigmoid(0.5) = 0.474077, -log sigmoid(-1.5) = 1.701413          -> NS G loss 1.087745
CASES = {
    "gan": (GAN(), 1.307840, -0.587745),
    "nsgan": (NSGAN(), 1.307840, 1.087745),
    # 1/2 mean((2-1)^2, (-1-1)^2) + 1/2 mean(0.5^2, 1.5^2) = 1.25 + 0.625; G: 1/2 mean(0.5^2, 2.5^2)
    "lsgan": (LSGAN(), 1.875, 1.625),
    # Eq. 8: 1/2 mean((D(x)-1)^2) + 1/2 mean((D(G(z))+1)^2) = 1.25 + 0.625; G: 1/2 mean(D(G(z))^2)
    "lsgan_pearson": (LSGAN(a=-1.0, b=1.0, c=0.0), 1.875, 0.625),
    # mean(D(G(z))) - mean(D(x)) = -0.5 - 0.5; G: -mean(D(G(z)))
    "wgan": (WGAN(), -1.0, 0.5),
    # mean(relu(1 - [2, -1])) + mean(relu(1 + [0.5, -1.5])) = 1 + 0.75
    "hinge": (Hinge(), 1.75, 0.5),
}


@pytest.mark.parametrize("name", CASES)
def test_loss_values(name):
    loss, d_expected, g_expected = CASES[name]
    t = loss.targets(2, torch.device("cpu"))
    assert loss.d_loss(D_REAL, D_FAKE, t).item() == pytest.approx(d_expected, abs=1e-5)
    assert loss.g_loss(D_FAKE, t).item() == pytest.approx(g_expected, abs=1e-5)


def test_bce_losses_are_stable_on_large_logits():
    t = NSGAN().targets(2, torch.device("cpu"))
    big = torch.tensor([200.0, -200.0])
    assert torch.isfinite(NSGAN().d_loss(big, -big, t))
    # -log sigmoid(-200) = 200 exactly in log-sum-exp form; sigmoid-then-log would give inf
    assert NSGAN().g_loss(torch.tensor([-200.0]), t).item() == pytest.approx(200.0)


def test_wgan_gp_adds_lambda_times_gradient_penalty():
    D = Linear2D([3.0, 4.0])  # ||grad|| = 5 -> (5 - 1)^2 = 16 -> lambda * 16 = 160
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    ctx = StepContext(0, None, D, real, None, fake, None)
    out = WGANGP(gp_weight=10.0).on_d_loss(torch.tensor(1.0), ctx)
    assert out.item() == pytest.approx(161.0, rel=1e-5)
    assert ctx.logs["loss/gp"].item() == pytest.approx(16.0, rel=1e-5)


def test_wgan_clips_critic_weights_after_each_step():
    D = nn.Linear(4, 1)
    with torch.no_grad():
        D.weight.fill_(0.5)
    loss = WGAN(clip=0.01)
    loss.D = D
    loss.after_d_step(0)
    assert D.weight.abs().max().item() == pytest.approx(0.01)
    assert D.bias.abs().max().item() <= 0.01
