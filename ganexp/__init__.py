"""ganexp: a config-driven experiment tool for generative adversarial networks."""

__version__ = "0.1.0"


def _map_source_conf() -> None:
    """pyproject ships ``conf/`` as the package ``ganexp.conf``. From a plain source tree
    (``PYTHONPATH=.``, as on a GPU machine that carries the tree but installs nothing) there is no
    such mapping, so register ``<tree>/conf`` under that name; an installed ganexp has its own."""
    import os
    import sys

    pkg = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(pkg)
    init = os.path.join(root, "conf", "__init__.py")
    if ("ganexp.conf" in sys.modules or os.path.isdir(os.path.join(pkg, "conf"))
            or not (os.path.isfile(init) and os.path.isfile(os.path.join(root, "pyproject.toml")))):
        return
    import importlib.util

    if importlib.util.find_spec("ganexp.conf") is not None:  # an editable install maps it already
        return
    spec = importlib.util.spec_from_file_location("ganexp.conf", init, submodule_search_locations=[os.path.dirname(init)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["ganexp.conf"] = module
    spec.loader.exec_module(module)
    globals()["conf"] = module  # as an import of the submodule would


_map_source_conf()
