"""Keep superseded runs: a stale run directory is moved aside, never overwritten.

``<parent>/seed1`` goes to ``<parent>/.history/seed1-<UTC timestamp>``.  The hidden folder
keeps the authors' aggregator (which lists non-hidden entries) and our tables off it.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("mmrl.sweep")

HISTORY = ".history"


def move_aside(run_dir: str | os.PathLike, reason: str = "") -> Path | None:
    """Move a run directory into its parent's .history/ folder; returns the new path."""
    src = Path(run_dir)
    if not src.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    dest_dir = src.parent / HISTORY
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{src.name}-{stamp}"
    n = 1
    while dest.exists():
        dest = dest_dir / f"{src.name}-{stamp}.{n}"
        n += 1
    os.replace(src, dest)
    if reason:
        (dest / "MOVED_ASIDE.txt").write_text(f"moved from {src} because: {reason}\n")
    log.info("moved %s aside to %s (%s)", src, dest, reason or "superseded")
    return dest
