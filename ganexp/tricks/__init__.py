"""The tricks catalogue. Each trick is a ``ganexp.hooks.Hook`` in one of these modules plus a
YAML in ``conf/tricks`` keyed by its name; ``docs/tricks.md`` lists them with their papers."""
