"""Caches of frozen activations must not outlive the arithmetic they were computed in."""
from __future__ import annotations

from collections.abc import Callable

import torch


def arithmetic_key(device: torch.device) -> tuple:
    """The device and the autocast in force there: what a cached activation depends on besides weights."""
    on = torch.is_autocast_enabled(device.type)
    return str(device), torch.get_autocast_dtype(device.type) if on else None


class ActivationCache:
    """Named tensors, one per arithmetic key (a training step reads the text prefix under
    autocast and, for the fp32 zero-shot features, without: both stay cached)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, tuple], torch.Tensor] = {}

    def get(self, name: str, device: torch.device, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        key = (name, arithmetic_key(device))
        if key not in self._entries:
            self._entries[key] = compute()
        return self._entries[key]

    def drop(self, *names: str) -> None:
        for key in list(self._entries):
            if not names or key[0] in names:
                del self._entries[key]
