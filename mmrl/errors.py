"""Errors a user can act on. The CLI prints their message without a traceback."""


class MMRLError(Exception):
    """Base class: the message names the file, key or value and says how to fix it."""


class ConfigError(MMRLError):
    pass


class DatasetError(MMRLError):
    pass


class WeightsError(MMRLError):
    pass


class CheckpointError(MMRLError):
    pass


class RunError(MMRLError):
    pass


class RecordError(RunError):
    """A run's record.json exists but cannot be read."""
