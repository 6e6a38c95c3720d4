"""Every error type of the package, in one module that imports nothing of it: each carries a
one-line reason, which the command line prints as it is (``dsr: error: <reason>``).

The modules that raise them re-export their own (``dsr.config.ConfigError`` is this
``ConfigError``), so either name works.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A run configuration that cannot be run, with a one-line reason."""


class ScheduleError(ValueError):
    """A schedule string that cannot be parsed."""


class MaskError(ValueError):
    """A mask that is not a bool tensor of its weight's shape."""


class DataError(RuntimeError):
    """A data set that is missing, corrupt or unreadable, with a one-line reason."""


class CheckpointError(RuntimeError):
    """A stored run file (checkpoint, summary, config) that cannot be read."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class ResultsError(ValueError):
    """Results that cannot be put in one table, with a one-line reason."""


class BookError(RuntimeError):
    """A notebook that failed or a book that did not build, with a one-line reason."""


class CommandError(Exception):
    """Bad input on the command line, reported as one line."""
