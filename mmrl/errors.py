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


class RunLocked(RunError):
    """Another process holds the run directory's lock."""


class IncompleteResults(MMRLError):
    """A results table was asked for cells whose runs are missing or unfinished."""


class DownloadError(MMRLError):
    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status  # set when the server answered with an HTTP error (e.g. 404)


class ChecksumError(DownloadError):
    """A downloaded file's SHA-256 differs from the one recorded for it."""


class ExtractError(MMRLError):
    """An archive cannot be unpacked (unknown kind, broken, or a member escaping the target)."""
