"""The console script ``ganexp``: ``ganexp compare`` goes straight to its argparse entry (no Hydra,
no torch, so its ``--help`` answers in well under a second); every other command loads
``ganexp.cli.main`` (Hydra, torch)."""
from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["compare"]:
        from ganexp.study.compare import main as compare_main

        sys.exit(compare_main(sys.argv[2:]))
    from ganexp.cli.main import main as full_main

    full_main()
