"""Every option in every group composes and builds; wrong values are rejected up front."""
import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from ganexp.build import build_run
from ganexp.errors import ConfigError, DataError
from ganexp.losses import Loss
from tests.conftest import make_cfg, options


@pytest.mark.parametrize("group", ["loss", "optimizer", "model", "generator", "discriminator", "experiment"])
def test_every_option_builds(group, tmp_path):
    for option in options(group):
        cfg = make_cfg([f"{group}={option}"], tmp_path / option)
        try:
            run = build_run(cfg)
        except DataError as e:  # presets on downloaded data (built on fake files in test_experiments.py)
            assert group == "experiment" and "\n" not in str(e) and ("download" in str(e) or "pip install" in str(e)), (option, str(e))
            continue
        assert isinstance(run.loss, Loss)
        z, y = run.latent.sample(4)
        assert run.G(z, y).shape[1:] == run.info.shape, (group, option)
        assert run.D(run.G(z, y), y).shape == (4 // getattr(run.D, "pack", 1),), (group, option)  # pacgan: per pack


def test_every_dataset_builds_or_says_what_to_do(tmp_path):
    """Datasets that need files absent here must fail with a one-line DataError naming the fix."""
    for option in options("dataset"):
        overrides = [f"dataset={option}", "model=mlp"]  # the MLP fits images and 2D points
        if "root" in make_cfg(overrides).dataset:
            overrides.append(f"dataset.root={tmp_path / 'empty'}")
        cfg = make_cfg(overrides, tmp_path / option)
        try:
            run = build_run(cfg)
        except DataError as e:
            msg = str(e)
            assert "\n" not in msg and ("download" in msg or "root" in msg or "pip install" in msg), msg
            continue
        x, _ = run.data.sample(4)
        assert x.shape[1:] == run.info.shape
        if run.info.kind == "image":
            assert -1.0 <= x.min() and x.max() <= 1.0


def test_model_pair_and_mixed_models():
    cfg = make_cfg(["model=mlp"])
    assert cfg.generator._target_.endswith("MLPGenerator") and cfg.discriminator._target_.endswith("MLPDiscriminator")
    cfg = make_cfg(["model=mlp", "generator=dcgan"])
    assert cfg.generator._target_.endswith("DCGANGenerator") and cfg.discriminator._target_.endswith("MLPDiscriminator")


def test_loss_presets_pick_their_optimizers():
    wgan = make_cfg(["loss=wgan"])
    assert wgan.optimizer.d._target_ == "torch.optim.RMSprop" and wgan.optimizer.d.lr == 5e-5
    assert wgan.optimizer.d_steps == 5 and wgan.loss.clip == 0.01
    gp = make_cfg(["loss=wgan_gp"])
    assert gp.optimizer.d.lr == 1e-4 and list(gp.optimizer.d.betas) == [0.0, 0.9] and gp.optimizer.d_steps == 5
    assert gp.loss.gp_weight == 10.0
    # an explicit optimizer wins over the loss's preset
    assert make_cfg(["loss=wgan", "optimizer=adam"]).optimizer.d._target_ == "torch.optim.Adam"


def test_dataset_shape_flows_into_models(tmp_path):
    run = build_run(make_cfg(["dataset.resolution=32"], tmp_path))
    assert run.info.shape == (1, 32, 32)
    z, y = run.latent.sample(3)
    assert run.G(z, y).shape == (3, 1, 32, 32)
    run16 = build_run(make_cfg(["dataset.resolution=16", "generator.upsample=pixelshuffle",
                                "discriminator.downsample=avgpool"], tmp_path / "r16"))
    assert run16.G(*run16.latent.sample(2)).shape == (2, 1, 16, 16)


def test_conditional_models_use_labels(tmp_path):
    run = build_run(make_cfg(["conditional=true"], tmp_path))
    z, y = run.latent.sample(10)
    assert y is not None and run.G.num_classes == 10
    # the same z with different labels gives different images
    a = run.G.eval()(z[:1].repeat(2, 1), torch.tensor([0, 1]))
    assert not torch.allclose(a[0], a[1])
    with pytest.raises(ConfigError, match="labelled dataset"):
        build_run(make_cfg(["conditional=true", "dataset=ring8", "model=mlp"], tmp_path / "ring"))


def test_typed_schema_rejects_wrong_types():
    with pytest.raises(ConfigCompositionException) as e:
        make_cfg(["optimizer.d.lr=abc"])
    assert isinstance(e.value.__cause__, ValidationError) or "could not be converted" in str(e.value.__cause__ or e.value)


def test_eval_settings_are_typed_too():
    with pytest.raises(ConfigCompositionException):
        make_cfg(["eval.every=abc"])
    with pytest.raises(ConfigCompositionException):
        make_cfg(["eval.best_mode=[1]"])
    assert make_cfg(["eval.every=250"]).eval.every == 250


def _schema_defaults(cls, prefix=""):
    """(dotted key, default) of every field of the typed schema, nested dataclasses walked."""
    import dataclasses

    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            if dataclasses.is_dataclass(value):
                yield from _schema_defaults(type(value), f"{prefix}{f.name}.")
                continue
            yield f"{prefix}{f.name}", value
        else:
            yield f"{prefix}{f.name}", f.default


def test_the_yaml_is_the_one_source_of_defaults():
    """conf/ holds every default; the schema only types them: each of its fields is MISSING, None
    (an optimizer argument not passed) or an empty container that a config group fills, and the
    composed default config leaves no field MISSING."""
    from omegaconf import MISSING, OmegaConf

    from ganexp.build.schema import TrainConfig

    own = {k: v for k, v in _schema_defaults(TrainConfig) if v is not MISSING and v not in (None, {}, [])}
    assert own == {"optimizer.g._partial_": True, "optimizer.d._partial_": True}  # what makes it an optimizer spec
    cfg = make_cfg([], tiny=False)
    assert OmegaConf.missing_keys(cfg) == set()
    for key, _ in _schema_defaults(TrainConfig):  # each typed key is in the composed config
        assert OmegaConf.select(cfg, key, throw_on_missing=True, default="absent") != "absent", key


@pytest.mark.parametrize("override, message", [
    ("optimizer.d.lr=-0.1", "optimizer.d.lr must be > 0"),
    ("optimizer.g.lr=0", "optimizer.g.lr must be > 0"),
    ("optimizer.d_steps=0", "optimizer.d_steps must be >= 1"),
    ("train.batch_size=0", "train.batch_size must be >= 1"),
    ("latent.prior=cauchy", "unknown latent prior 'cauchy'"),
    ("generator.upsample=bicubic", "unknown upsample 'bicubic'"),
    ("dataset.resolution=36", "dcgan needs a resolution"),
    ("device=cuda:7", "no CUDA device" if not torch.cuda.is_available() else "CUDA"),
])
def test_bad_values_fail_with_one_line(override, message, tmp_path):
    with pytest.raises(ConfigError) as e:
        build_run(make_cfg([override], tmp_path))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_image_model_on_points_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="use model=mlp"):
        build_run(make_cfg(["dataset=ring8"], tmp_path))


def test_experiment_presets_override_the_root_defaults():
    cfg = make_cfg(["experiment=ring8_mlp"], tiny=False)
    assert cfg.latent.dim == 2 and cfg.train.steps == 3000 and cfg.train.batch_size == 256
    assert cfg.dataset._target_.endswith("toy.ring") and cfg.loss._target_.endswith("LSGAN")
    # the command line still wins over the preset
    assert make_cfg(["experiment=ring8_mlp", "train.steps=7"], tiny=False).train.steps == 7
