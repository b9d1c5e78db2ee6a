"""What a precision setting (PREC, TEST.PREC) means on a device, and its autocast."""
from __future__ import annotations

import contextlib

import torch


def resolve_precision(prec: str, device: torch.device) -> str:
    """What a requested precision means on this device: amp/fp16 need CUDA (fp32 elsewhere)."""
    if prec in ("amp", "fp16"):
        return "amp" if device.type == "cuda" else "fp32"
    return prec


def autocast_context(prec: str, device: torch.device, *, cache: bool = True):
    """``cache=False`` for CUDA-graph capture (autocast's weight-cast cache must not outlive it)."""
    if prec == "amp":
        return torch.autocast(device_type="cuda", dtype=torch.float16, cache_enabled=cache)
    if prec == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()
