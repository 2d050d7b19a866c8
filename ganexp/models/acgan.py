"""AC-GAN's auxiliary classification terms: the loss side of D's class head
(``discriminator.cond=acgan``), which a discriminator with the head brings as a hook of its own
(``Discriminator.required_hooks``); ``tricks=[acgan]`` (``ganexp.tricks.acgan``) sets its weights."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ganexp.errors import require
from ganexp.hooks import Hook, SetupContext, StepContext


def class_loss(logits: Tensor, y: Tensor) -> Tensor:
    """The mean cross-entropy of class logits against labels: AC-GAN's -L_C on one batch."""
    return F.cross_entropy(logits.float(), y)


class ACGAN(Hook):
    """Auxiliary-classifier GAN (Odena et al. 2017, Eqs. 2-3): D's class head (``D.classify``)
    is trained on real and generated batches, D's loss adding
    ``weight_d * (CE(classify(real), y_real) + CE(classify(fake), y_fake))`` (L_C on both), and
    G's loss adding ``weight_g * CE(classify(fake), y_fake)``; the adversarial loss is untouched,
    so any ``loss=`` fits. The class logits come from one extra forward of ``D.features`` per
    batch (the engine's D call returns the adversarial logit only), on the batches before
    ``on_d_input`` tricks (e.g. diffaugment) act. Logs the classifier's accuracy on the real and
    on the generated batch of the last D step (``acc_real``, ``acc_fake``).

    Added with its defaults whenever ``discriminator.cond=acgan``; ``tricks=[acgan]`` sets the
    weights."""

    name = "acgan"

    def __init__(self, weight_d: float = 1.0, weight_g: float = 1.0):
        require(weight_d >= 0 and weight_g >= 0, f"acgan weights must be >= 0, got weight_d={weight_d}, weight_g={weight_g}")
        self.weight_d, self.weight_g = weight_d, weight_g
        self.acc: dict[str, Tensor] = {}

    def modify_models(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        require(getattr(D, "classifier", None) is not None,
                "acgan needs conditional=true and discriminator.cond=acgan (D's class head)")
        if D.classifier.in_features != D.feat_dim:  # a batch layer listed earlier widened D's features
            D.classifier = nn.Linear(D.feat_dim, D.classifier.out_features).to(D.classifier.weight.device)
        return G, D

    def setup(self, ctx: SetupContext) -> None:
        require(ctx.D.classifier.in_features == ctx.D.feat_dim,
                "list acgan after the tricks that widen D's features (minibatch_discrimination, minibatch_stddev)")

    def d_terms(self, logits_real: Tensor, y_real: Tensor, logits_fake: Tensor, y_fake: Tensor) -> Tensor:
        return self.weight_d * (class_loss(logits_real, y_real) + class_loss(logits_fake, y_fake))

    def g_term(self, logits_fake: Tensor, y_fake: Tensor) -> Tensor:
        return self.weight_g * class_loss(logits_fake, y_fake)

    def on_d_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        lr, lf = ctx.D.classify(ctx.real), ctx.D.classify(ctx.fake)
        self.acc = {"acc_real": (lr.detach().argmax(1) == ctx.y_real).float().mean(),
                    "acc_fake": (lf.detach().argmax(1) == ctx.y_fake).float().mean()}
        return loss + self.d_terms(lr, ctx.y_real, lf, ctx.y_fake)

    def on_g_loss(self, loss: Tensor, ctx: StepContext) -> Tensor:
        return loss + self.g_term(ctx.D.classify(ctx.fake), ctx.y_fake)

    def scalars(self, step: int) -> dict[str, Tensor]:
        return dict(self.acc)
