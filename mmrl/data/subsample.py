"""Base/new class subsampling with relabelling (docs/protocol.md#base-and-new-classes)."""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from mmrl.data.items import Item
from mmrl.errors import ConfigError

log = logging.getLogger("mmrl.data")
MODES = ("all", "base", "new")


def split_base_new(labels: Sequence[int], subsample: str) -> list[int]:
    """The selected labels: the first ceil(n/2) sorted labels for "base", the rest for "new"."""
    labels = sorted(set(labels))
    m = math.ceil(len(labels) / 2)
    return labels[:m] if subsample == "base" else labels[m:]


def subsample_classes(*lists: Sequence[Item] | None, subsample: str = "all") -> list[list[Item] | None]:
    """Keep the base or new half of the classes in every list and relabel them 0..m-1.

    The classes are decided from the FIRST list (the few-shot train list), as the reference
    does. Lists keep their order; ``None`` lists stay None.
    """
    if subsample not in MODES:
        raise ConfigError(f"DATASET.SUBSAMPLE_CLASSES = {subsample!r}; expected one of {', '.join(MODES)}.")
    if subsample == "all":
        return [None if lst is None else list(lst) for lst in lists]
    first = lists[0] or []
    selected = split_base_new([it.label for it in first], subsample)
    log.info("SUBSAMPLE %s CLASSES!", subsample.upper())
    relabel = {old: new for new, old in enumerate(selected)}
    out: list[list[Item] | None] = []
    for lst in lists:
        if lst is None:
            out.append(None)
            continue
        out.append([Item(it.impath, relabel[it.label], it.classname, it.domain)
                    for it in lst if it.label in relabel])
    return out
