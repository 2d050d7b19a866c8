"""The face: the ``ganexp`` command (``main``: the subcommands and the train task; ``argv``: what is
checked and rewritten on the command line before Hydra parses it)."""
