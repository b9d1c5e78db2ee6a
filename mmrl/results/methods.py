"""What the tables and plots show of a method, by trainer name, from the method registry
(mmrl/trainers): its printed name, its key in the published CSVs (their ``method`` column),
its plot colour, and the row order (the registry's: zero-shot CLIP, the baselines by year,
then MMRL and MMRL++).

A trainer found on disk that is not registered is still tabulated: under its own name, after
the registered ones.
"""
from __future__ import annotations

from mmrl.trainers import registry


def _method(trainer: str):
    return registry.get(trainer) if trainer in registry.names() else None


def display_name(trainer: str) -> str:
    m = _method(trainer)
    return m.display if m else trainer


def zero_shot_label(trainer: str) -> str:
    """A method that trains nothing, beside the trained methods' shot counts (a table's column, a plot's legend)."""
    return f"{display_name(trainer)} (zero-shot)"


def published_key(trainer: str) -> str:
    m = _method(trainer)
    return m.published_key if m else trainer


def color(trainer: str) -> str | None:
    """None for an unregistered trainer: matplotlib then picks the next colour of its cycle."""
    m = _method(trainer)
    return m.color if m else None


def row_order(trainers) -> list[str]:
    """``trainers`` in the registry's order; unregistered ones last, in the order given."""
    rank = {t: i for i, t in enumerate(registry.names())}
    return sorted(dict.fromkeys(trainers), key=lambda t: rank.get(t, len(rank)))
