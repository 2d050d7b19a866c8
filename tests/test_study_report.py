"""`ganexp compare --report` (one self-contained HTML page), the budget axes (--x) and the bands of
the plots, and a compare that starts without torch."""
import base64
import io
import json
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import yaml
from PIL import Image

from ganexp.study import compare, plot as study_plot, runs as study_runs, table as study_table
from tests.conftest import ring_study

COLOURS = {"gan": (200, 30, 30), "hinge": (30, 200, 30), "lsgan": (30, 30, 200)}


class Page(HTMLParser):
    """The parts of the report a reader sees: table cells by table id, images, external references."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.external, self._table, self._cell = {}, [], [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append({"class": a.get("class", ""), "cells": []})
        elif tag in ("td", "th") and self._table:
            self._cell = ""
        elif tag == "img":
            self.images.append(a)
        for k in ("src", "href"):
            if k in a and not a[k].startswith("data:"):
                self.external.append(a[k])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1]["cells"].append(self._cell.strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def add_samples_and_provenance(root):
    for d in sorted(root.iterdir()):
        loss = d.name.split("_")[0].split("-")[1]
        (d / "samples").mkdir()
        for step, shade in ((1000, 0.5), (3000, 1.0)):  # the last grid (step 3000) is the full colour
            px = np.array([[int(c * shade) for c in COLOURS[loss]]], dtype=np.uint8).reshape(1, 1, 3)
            Image.fromarray(np.repeat(np.repeat(px, 20, 0), 20, 1)).save(d / "samples" / f"step_{step:07d}.png")
        (d / "provenance.json").write_text(json.dumps({"runs": [{
            "command": "ganexp train -m experiment=study_ring8_losses", "git": {"commit": "abcdef1234567890", "dirty": False},
            "versions": {"ganexp": "0.1.0", "torch": "2.9"}, "python": "3.11", "device": {"type": "cpu", "name": "x86_64"},
            "host": "box"}]}))
        (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"train": {"batch_size": 64}, "optimizer": {"d_steps": 2}}))


def test_report_is_one_self_contained_page_with_the_marked_table_curves_and_a_grid_per_group(tmp_path, capsys):
    root = ring_study(tmp_path / "ring")
    add_samples_and_provenance(root)
    assert compare.main([str(root), "--sort", "modes", "--report"]) == 0
    assert f"wrote {root / 'compare.html'}" in capsys.readouterr().out
    page = Page()
    page.feed((root / "compare.html").read_text())
    assert page.external == []  # nothing outside the file
    head, *rows = page.tables["results"]
    assert head["cells"][:6] == ["loss", "n", "modes", "modes 95% CI", "p (Holm)", "vs best"]
    marks = {r["cells"][0]: (r["class"], r["cells"][5], r["cells"][2]) for r in rows}
    assert marks == {"gan": ("best", "best", "7.40 ± 0.55"), "hinge": ("tied", "tied with best", "6.80 ± 0.84"),
                     "lsgan": ("worse", "worse", "5.0 ± 1.6")}
    pngs = [Image.open(io.BytesIO(base64.b64decode(i["src"].split(",", 1)[1]))) for i in page.images]
    for im in pngs:
        im.load()
    assert len(pngs) == 4 and pngs[0].size == (700, 450)  # the curve of the tested metric, then a grid per group
    grids = [tuple(np.asarray(im.convert("RGB"))[0, 0]) for im in pngs[1:]]
    assert grids == [COLOURS["gan"], COLOURS["hinge"], COLOURS["lsgan"]]  # each group's last grid (step 3000)
    groups = {r["cells"][0]: r["cells"] for r in page.tables["overrides"][1:]}
    assert groups["loss=hinge"][1:] == ["loss=hinge", "0, 1, 2, 3, 4", "5"]
    prov = {r["cells"][0]: r["cells"][1] for r in page.tables["provenance"]}
    assert prov["commit"] == "abcdef123456 (15 runs)" and prov["device"] == "cpu: x86_64 (15 runs)"
    assert prov["this report"].startswith("ganexp compare") and "--report" in prov["this report"]


def test_x_axes_are_steps_images_seen_and_seconds(tmp_path):
    root = ring_study(tmp_path / "ring")
    add_samples_and_provenance(root)
    table = study_table.tabulate(study_table.group_runs([study_runs.load_run(p) for p in study_runs.find_runs([root])]))
    assert study_plot.curves(table, "modes", x="step")["loss=gan (n=5)"][0] == [1000, 3000]
    assert study_plot.curves(table, "modes", x="images")["loss=gan (n=5)"][0] == [1000 * 64 * 2, 3000 * 64 * 2]
    assert study_plot.curves(table, "modes", x="seconds")["loss=gan (n=5)"][0] == [12.0, 32.0]  # mean of 10+seed, 30+seed
    assert compare.main([str(root), "--plot", "modes", "--x", "seconds"]) == 0
    assert (root / "compare_modes_seconds.png").is_file()


def test_bands_stay_in_the_metrics_range(tmp_path):
    root = tmp_path / "s"
    from tests.test_compare import write_run

    for seed, v in enumerate([0.0, 0.0, 0.0, 4.0]):  # mean 1, std 2: mean - std and the CI run below 0 modes
        write_run(root / f"seed-{seed}", [f"seed={seed}"], [{"step": 10, "metrics/modes": v, "metrics/modes_hq_percent": 25 * v}])
    table = study_table.tabulate(study_table.group_runs([study_runs.load_run(p) for p in study_runs.find_runs([root])]))
    for band in ("std", "ci"):
        _, mean, lo, hi = study_plot.curves(table, "modes", band=band)["(defaults) (n=4)"]
        assert mean[0] == 1.0 and lo[0] == 0.0 and hi[0] > 2.9
        _, _, lo, hi = study_plot.curves(table, "modes_hq_percent", band=band)["(defaults) (n=4)"]
        assert lo[0] == 0.0 and hi[0] <= 100.0


def test_compare_loads_no_torch_and_its_help_no_table(tmp_path):
    code = ("import sys\n"
            "import ganexp.study.compare, ganexp.study.table, ganexp.study.plot, ganexp.study.report, ganexp.cli.entry\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'scipy', 'hydra', 'matplotlib'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_code = ("import sys, atexit\n"
                 "atexit.register(lambda: print('loaded', sorted({m.split('.')[0] for m in sys.modules} & "
                 "{'torch', 'numpy', 'hydra', 'ganexp.study.table'}), 'ganexp.study.table' in sys.modules))\n"
                 "sys.argv = ['ganexp', 'compare', '--help']\n"
                 "from ganexp.cli.entry import main\nmain()\n")
    r = subprocess.run([sys.executable, "-c", help_code], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: ganexp compare" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "loaded [] False"  # the console script's --help: argparse alone
