from ganexp.build import build_run
from ganexp.engine import train
from tests.conftest import read_events


def test_tiny_run_writes_scalars_and_images(cfg_factory):
    run = build_run(cfg_factory())
    final = train(run)
    acc = read_events(run.out_dir)
    assert {"loss/d", "loss/g"} <= set(acc.Tags()["scalars"])
    assert "samples/grid" in acc.Tags()["images"]
    assert final["step"] == 4
