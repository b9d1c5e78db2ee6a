"""The labelled image record every loader produces (Dassl's "Datum")."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    impath: str       # absolute path of the image file
    label: int        # the dataset's own 0-based label (or the base/new relabel after subsampling)
    classname: str    # post-processed class name (renames applied)
    domain: int = 0
