"""Duplicate the run's log lines to stdout and <OUTPUT_DIR>/log.txt (Dassl's tee).

Library code logs to the ``mmrl`` logger; during a run this attaches two plain-message
handlers.  log.txt is appended to (a resumed run keeps one log, and the authors'
parse_test_res.py reads the last result block of log.txt).
"""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path


class _Plain(logging.Formatter):
    def format(self, record):
        msg = super().format(record)
        return msg if record.levelno <= logging.INFO else f"{record.levelname}: {msg}"


@contextlib.contextmanager
def run_logging(log_path: Path | None, stream=None):
    logger = logging.getLogger("mmrl")
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stdout)]
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(_Plain("%(message)s"))
        logger.addHandler(h)
    old_level, old_prop = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)
        logger.propagate = old_prop


def log_path_for(output_dir: str) -> Path:
    """Dassl: an OUTPUT_DIR ending in .txt/.log is the log file itself."""
    p = Path(output_dir)
    return p if p.suffix in (".txt", ".log") else p / "log.txt"
