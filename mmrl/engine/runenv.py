"""What a run's record and log header say about where and when it ran: the code version, the
environment, the time, the process's start-up seconds."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from mmrl import __version__
from mmrl.utils.rng import deterministic_requested


def code_version(root: Path = Path(__file__).resolve().parents[2]) -> str:
    """The package version, plus the git commit when the package runs from its own checkout (an
    installed copy's site-packages may lie inside another repository, e.g. a project's .venv)."""
    if not (root / ".git").exists():
        return __version__
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", ""
    return f"{__version__}+{sha}{'.dirty' if dirty else ''}" if sha else __version__


def environment(use_cuda: bool) -> dict[str, Any]:
    """``use_cuda``: the run's USE_CUDA; ``device`` names what computes, not merely what is there."""
    import PIL
    cuda = torch.cuda.is_available()
    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cuda_available": cuda,
            "device": torch.cuda.get_device_name(0) if cuda and use_cuda else platform.processor() or "cpu",
            "pillow": PIL.__version__, "threads": torch.get_num_threads(), "deterministic": deterministic_requested()}


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def since_process_start() -> float | None:
    """Seconds since this process started (interpreter, imports, config): Linux only."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)
