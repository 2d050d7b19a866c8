import torch

from ganexp.build import build_run
from ganexp.engine import checkpoint, train
from tests.conftest import read_events, scalars


def test_tiny_run_writes_scalars_images_and_a_checkpoint(cfg_factory):
    run = build_run(cfg_factory())
    final = train(run)
    acc = read_events(run.out_dir)
    assert {"loss/d", "loss/g", "d/real", "d/fake"} <= set(acc.Tags()["scalars"])
    for tag in ("loss/d", "loss/g"):  # logged every 2 steps; the last value is the final one
        steps, values = zip(*scalars(run.out_dir, tag))
        assert steps == (2, 4) and values[-1] == final[tag]
    # the 16 fixed latents' samples as a 4 x 4 grid of 28 px digits, 2 px apart, and as a PNG
    (grid,) = acc.Images("samples/grid")
    assert (grid.step, grid.width, grid.height) == (4, 4 * 30 + 2, 4 * 30 + 2)
    assert (run.out_dir / "samples" / "step_0000004.png").is_file()
    state = checkpoint.load(run.out_dir)
    assert state["step"] == 4 and state["data_info"]["shape"] == [1, 28, 28]
    for key, model in (("G", run.G), ("D", run.D)):  # the trained weights, every tensor
        assert state[key].keys() == model.state_dict().keys()
        assert all(torch.equal(state[key][k], v) for k, v in model.state_dict().items())
