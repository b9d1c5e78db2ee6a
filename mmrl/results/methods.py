"""Everything the tables and plots know about a method, by trainer name: the name printed in
tables, its key in the published CSVs (their ``method`` column), its colour in plots and the
order of the rows (the paper's: zero-shot CLIP, the baselines by year, then MMRL and MMRL++).

A trainer not listed here is still tabulated: under its own name, after the listed ones.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    display: str       # row label in tables, legend entry in plots
    published: str     # the CSVs' ``method`` value
    color: str         # matplotlib colour


# In row order.
_METHODS: dict[str, Method] = {
    "ZeroshotCLIP": Method("CLIP", "CLIP", "tab:gray"),
    "CoOp": Method("CoOp", "CoOp", "tab:green"),
    "CoCoOp": Method("CoCoOp", "CoCoOp", "tab:olive"),
    "KgCoOp": Method("KgCoOp", "KgCoOp", "tab:cyan"),
    "IVLP": Method("IVLP", "IVLP", "tab:pink"),
    "MaPLe": Method("MaPLe", "MaPLe", "tab:purple"),
    "PromptSRC": Method("PromptSRC", "PromptSRC", "tab:brown"),
    "MMRL": Method("MMRL", "MMRL", "tab:blue"),
    "MMRLpp": Method("MMRL++", "MMRL++", "tab:orange"),
}


def display_name(trainer: str) -> str:
    m = _METHODS.get(trainer)
    return m.display if m else trainer


def published_key(trainer: str) -> str:
    m = _METHODS.get(trainer)
    return m.published if m else trainer


def color(trainer: str) -> str | None:
    """None for an unlisted trainer: matplotlib then picks the next colour of its cycle."""
    m = _METHODS.get(trainer)
    return m.color if m else None


def row_order(trainers) -> list[str]:
    """``trainers`` in the paper's row order; unlisted ones last, in the order given."""
    rank = {t: i for i, t in enumerate(_METHODS)}
    return sorted(dict.fromkeys(trainers), key=lambda t: rank.get(t, len(rank)))
