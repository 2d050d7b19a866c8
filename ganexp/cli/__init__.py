"""The face: the ``ganexp`` command (``main``: the subcommands and the train task; ``argv``: what is
checked and rewritten on the command line before Hydra parses it; ``entry``: the console script,
which sends ``ganexp compare`` to its torch-free entry before anything heavy loads)."""
