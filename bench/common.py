"""Shared helpers of the benchmark scripts: backbone, cases, memory and timing probes."""
from __future__ import annotations

import os
import resource
import sys
import time

import torch

from mmrl.data.resources import read_lines

CASES = {
    # name: (class-name resource, number of classes, template)
    "eurosat": ("eurosat_classnames.txt", 5, "a centered satellite photo of {}."),
    "imagenet": ("imagenet_clip_classnames.txt", 500, "a photo of a {}."),
}


def case_classes(case: str, n: int | None = None) -> tuple[list[str], str]:
    """The case's class names and template; ``n`` other than the case's own: ImageNet's first n names."""
    resource_name, own, template = CASES[case]
    if n is not None and n != own:
        resource_name = "imagenet_clip_classnames.txt"
    names = list(read_lines(resource_name)[:n or own])
    if len(names) < (n or own):
        raise SystemExit(f"{resource_name} has only {len(names)} class names; asked for {n}")
    return names, template


def load_random_backbone(name: str = "random:ViT-B-16", seed: int = 0):
    """A CLIP with random weights, identical in every process for the same seed."""
    import logging
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that no weights were loaded
    from mmrl.clip.backbone import load_backbone
    torch.manual_seed(seed)
    return load_backbone(name)[0]


_BACKBONES: dict[tuple, torch.nn.Module] = {}


def shared_random_backbone(name: str, device: torch.device) -> torch.nn.Module:
    """``load_random_backbone`` once per process and device (several class counts share it)."""
    key = (name, str(device))
    if key not in _BACKBONES:
        _BACKBONES[key] = load_random_backbone(name).to(device)
    return _BACKBONES[key]


def drop_backbones() -> None:
    _BACKBONES.clear()


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else peak_rss_mb()


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux clear_refs 5), so a later peak covers only what follows."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru / 2**20 if sys.platform == "darwin" else ru / 1024


class Clock:
    """Wall and process-CPU seconds of a block; CUDA work is synchronised first."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        return False


def machine() -> dict:
    import platform
    out = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "threads": torch.get_num_threads(), "torch": torch.__version__}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    out["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
