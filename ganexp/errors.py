"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class GanexpError(Exception):
    """A mistake the user can fix (bad option, missing file, corrupt checkpoint)."""


class ConfigError(GanexpError):
    """An option value or combination that cannot work."""


class DataError(GanexpError):
    """A dataset that is missing, unreadable or empty."""


class CheckpointError(GanexpError):
    """A checkpoint that is missing, corrupt or does not fit the models."""


class TrainingDiverged(GanexpError):
    """Losses became NaN or infinite."""


def require(ok: bool, msg: str) -> None:
    """A build-time check of an option or a combination: one line, raised as ConfigError."""
    if not ok:
        raise ConfigError(msg)


def whole_number(value, key: str, least: int = 1) -> int:
    """``value`` as an option's whole number >= ``least``, or one line naming the key (``n=abc``, ``n=0``)."""
    require(isinstance(value, int) and not isinstance(value, bool) and value >= least,
            f"{key} must be a whole number >= {least}, got {value!r}")
    return value
