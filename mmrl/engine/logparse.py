"""Read accuracies from Dassl log.txt files (the authors' run dirs have no record.json).

Same rule as the authors' aggregator (docs/protocol.md#run-directories-and-aggregation): after
the first ``=> result`` line, every ``* <keyword>: <number>%`` line sets the value, so the last
result block wins.  The
printed numbers are rounded to 0.1.
"""
from __future__ import annotations

import os
import re
from pathlib import Path


def _pattern(keyword: str) -> re.Pattern:
    return re.compile(r"\* " + re.escape(keyword) + r": ([\.\deE+-]+)%")


def last_result(log_path: str | os.PathLike, keyword: str = "accuracy") -> float | None:
    """The value of the last result block in a log, or None when the log has none."""
    path = Path(log_path)
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    pattern = _pattern(keyword)
    found, value = False, None
    for line in text.splitlines():
        line = line.strip()
        if line == "=> result":
            found = True
        if found:
            m = pattern.search(line)
            if m:
                try:
                    value = float(m.group(1))
                except ValueError:
                    pass
    return value


def tail(path: str | os.PathLike, lines: int = 20) -> list[str]:
    """The last lines of a text file (empty when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]
