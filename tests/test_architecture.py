"""The shape of the package (docs/architecture.md): wings that import only the wings below them,
no import circle, short files, few modules at the top. Read from the source (AST), so imports inside
functions and under ``TYPE_CHECKING`` count as much as those at the top of a file."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ganexp"

#: Each wing's rank: a module may import its own wing, a wing of the same rank, or one below.
RANKS = {
    "__main__": 7,
    "cli": 6,
    "sample": 5, "study": 5,
    "build": 4,
    "engine": 3,
    "losses": 2, "models": 2, "data": 2, "tricks": 2, "metrics": 2,
    "rundir": 1,
    "hooks": 0, "errors": 0, "__init__": 0,  # the extension API, user-facing errors, the version
}


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package at ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in the file (``from pkg import sub``
    names the submodule when there is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in known:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known.keys()
            found |= subs or {node.module}
    return found


def wing(module: str, package: str) -> str:
    """``ganexp.engine.loop`` -> ``engine``; ``ganexp.hooks`` -> ``hooks``; ``ganexp`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def problems(root: Path, ranks: dict[str, int]) -> list[str]:
    """Every import circle and every arrow from a lower wing to a higher one, as lines."""
    known = modules(root)
    graph = {m: imports(p, known) - {m} for m, p in known.items()}
    out = []
    for m, targets in graph.items():
        for t in sorted(targets):
            a, b = wing(m, root.name), wing(t, root.name)
            if a not in ranks or b not in ranks:
                out.append(f"{m} -> {t}: wing {a if a not in ranks else b} has no rank")
            elif ranks[b] > ranks[a]:
                out.append(f"{m} -> {t}: {a} (rank {ranks[a]}) imports the higher wing {b} (rank {ranks[b]})")
    # circles: a depth-first search that reports each back edge with the path it closes
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                out.append("circle: " + " -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return out


def test_wings_import_only_downward_and_nothing_imports_in_a_circle():
    assert problems(ROOT, RANKS) == []


def test_the_check_catches_an_upward_arrow_and_a_circle(tmp_path):
    pkg = tmp_path / "pkg"
    for f, text in {"__init__.py": "", "hooks.py": "from pkg.engine import loop\n",
                    "engine/__init__.py": "", "engine/loop.py": "from pkg.engine import step\n",
                    "engine/step.py": "def f():\n    from pkg.engine import loop\n",
                    "build/__init__.py": "", "build/build.py": "from pkg.engine import loop\n"}.items():
        (pkg / f).parent.mkdir(parents=True, exist_ok=True)
        (pkg / f).write_text(text)
    found = problems(pkg, {"__init__": 0, "hooks": 0, "engine": 1, "build": 2})
    assert "pkg.hooks -> pkg.engine.loop: hooks (rank 0) imports the higher wing engine (rank 1)" in found
    assert "circle: pkg.engine.loop -> pkg.engine.step -> pkg.engine.loop" in found
    assert not any(p.startswith("pkg.build") for p in found)  # a downward arrow is fine


def test_every_wing_has_a_rank():
    tops = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.name != "conf"}
    assert tops - set(RANKS) == set()


def test_the_top_of_the_package_holds_at_most_six_modules():
    top = [p.name for p in ROOT.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= 6, top


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_is_over_300_lines(path):
    assert len(path.read_text().splitlines()) <= 300
