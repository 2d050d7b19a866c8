"""A Python like the GPU machine's: this interpreter's packages (torch, numpy, scikit-learn, pytest,
...) minus ganexp and the dependencies the device image lacks (hydra-core, omegaconf, the antlr4
runtime, mlxtend, torch-fidelity), as a venv whose site-packages links to the rest. The GPU check's
dry run uses it, so it proves that the carried wheels alone are enough (tests/test_gpu_check.py).

    python scripts/device_like_python.py DIR     # prints DIR/bin/python
"""
from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

#: What the GPU image does not have (ganexp itself comes from the source tree there).
ABSENT = ("hydra", "hydra_core", "omegaconf", "antlr4", "antlr4_python3_runtime", "mlxtend", "torch_fidelity",
          "ganexp", "__editable__", "_ganexp", "__pycache__")


def make(dest: Path) -> Path:
    dest = dest.resolve()
    shim = dest / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    for sp in site.getsitepackages():
        for entry in Path(sp).iterdir():
            if entry.name.lower().replace("-", "_").startswith(ABSENT) or (shim / entry.name).exists():
                continue
            if entry.suffix == ".pth" and "ganexp" in entry.read_text(errors="ignore"):
                continue
            (shim / entry.name).symlink_to(entry)
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(base if base.exists() else sys.executable), "-m", "venv", "--without-pip", str(dest / "py")],
                   check=True)
    purelib = sysconfig.get_path("purelib", vars={"base": str(dest / "py"), "platbase": str(dest / "py")})
    Path(purelib, "_device_like.pth").write_text(f"import site; site.addsitedir({str(shim)!r})\n")
    return dest / "py" / "bin" / "python"


if __name__ == "__main__":
    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else os.path.join("outputs", "device_like"))))
