"""Caches of frozen activations must not outlive the arithmetic they were computed in."""
from __future__ import annotations

from collections.abc import Callable

import torch


def arithmetic_key(device: torch.device) -> tuple:
    """The device and the autocast in force there: what a cached activation depends on besides weights."""
    on = torch.is_autocast_enabled(device.type)
    return str(device), torch.get_autocast_dtype(device.type) if on else None


class ActivationCache:
    """Named tensors, each valid only under the arithmetic key it was computed with."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, torch.Tensor]] = {}

    def get(self, name: str, device: torch.device, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        key = arithmetic_key(device)
        hit = self._entries.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = compute()
        self._entries[name] = (key, value)
        return value

    def drop(self, *names: str) -> None:
        for name in names or list(self._entries):
            self._entries.pop(name, None)
