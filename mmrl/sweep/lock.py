"""One lock per run directory, so two sweeps on the same output root never run a job twice.

The lock file sits beside the run directory (``<parent>/.<name>.lock``), not inside it: the
run directory may be moved aside (history) while we hold the lock, and a hidden name keeps
the authors' aggregator (which skips hidden entries) unaffected.  ``fcntl.flock`` locks
belong to the open file, so the kernel drops them when the holder dies: no stale locks.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


def lock_path(run_dir: str | os.PathLike) -> Path:
    p = Path(run_dir)
    return p.parent / f".{p.name}.lock"


class RunLock:
    """Non-blocking exclusive lock: ``acquire()`` returns False when someone else holds it."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = lock_path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for a human wondering who holds it
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(run_dir: str | os.PathLike) -> bool:
    """Whether another open file holds the sweep's lock of this run now (probe, not kept)."""
    return is_flocked(lock_path(run_dir))


# The engine's own lock (mmrl/engine/run.py): held while any train.py process runs the directory,
# including runs started by hand, outside a sweep.
ENGINE_LOCK = ".run.lock"


def engine_running(run_dir: str | os.PathLike) -> bool:
    return is_flocked(Path(run_dir) / ENGINE_LOCK)


def is_flocked(path: str | os.PathLike) -> bool:
    """Whether some open file holds an flock on ``path`` (without keeping one ourselves)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our probe lock too
    return False
