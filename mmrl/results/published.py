"""Published numbers shipped as package data (mmrl/results/published/*.csv, see its README).

Each CSV row is one method as printed in one source (its ``paper`` column: the paper or
README whose table holds the row); sources.csv / provenance.csv say where every value was
read.  An empty cell means "not found" and stays blank in our tables.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from mmrl.results import methods
from mmrl.results.aggregate import AVERAGE

DATA_DIR = Path(__file__).resolve().parent / "published"
FILES = {"b2n": "b2n.csv", "cd": "cross_dataset.csv", "dg": "domain_generalization.csv", "fs": "few_shot.csv"}


@dataclass
class Published:
    method: str                  # the CSV's method column (methods.published_key of a trainer)
    paper: str                   # whose table the row is copied from
    values: dict[tuple[str, int | None], dict[str, float]] = field(default_factory=dict)
    # (DATASET.NAME or AVERAGE, shots or None) -> {metric: value}


def _num(text: str | None) -> float | None:
    text = (text or "").strip()
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _dataset_key(name: str) -> str:
    name = name.strip()
    if name.lower() == "average":
        return AVERAGE
    if name == "source_imagenet":
        return "ImageNet"
    return name


def rows(protocol: str) -> list[Published]:
    """One entry per (method, paper), in file order; entries without any value are left out."""
    with open(DATA_DIR / FILES[protocol], newline="") as f:
        lines = list(csv.DictReader(f))
    out: dict[tuple[str, str], Published] = {}
    for line in lines:
        method, paper = line.get("method", "").strip(), line.get("paper", "").strip()
        cells: dict[tuple[str, int | None], dict[str, float]] = {}
        if protocol == "b2n":
            cells[(_dataset_key(line["dataset"]), None)] = {m: _num(line.get(m)) for m in ("base", "novel", "hm")}
        elif protocol == "fs":
            cells[(_dataset_key(line["dataset"]), int(line["shots"]))] = {"accuracy": _num(line.get("accuracy"))}
        else:  # wide: one column per dataset
            for col, text in line.items():
                if col not in ("paper", "method"):
                    cells[(_dataset_key(col), None)] = {"accuracy": _num(text)}
        for key, vals in cells.items():
            vals = {m: v for m, v in vals.items() if v is not None}
            if vals:
                out.setdefault((method, paper), Published(method, paper)).values.setdefault(key, {}).update(vals)
    return list(out.values())


def for_trainer(entries: list[Published], trainer: str) -> list[Published]:
    key = methods.published_key(trainer)
    return [p for p in entries if p.method == key]


def load(protocol: str) -> dict[tuple[str, str, int | None], dict[str, float]]:
    """(method, DATASET.NAME or AVERAGE, shots) -> {metric: value}: one number per cell, the
    first source's in file order (the wide layout's "pub." column has room for one)."""
    out: dict[tuple[str, str, int | None], dict[str, float]] = {}
    for p in rows(protocol):
        for (dataset, shots), vals in p.values.items():
            out.setdefault((p.method, dataset, shots), vals)
    return out


def lookup(table, trainer: str, dataset_name: str, shots: int | None, metric: str) -> float | None:
    vals = table.get((methods.published_key(trainer), dataset_name, shots))
    return (vals or {}).get(metric)


def has_any(table, trainer: str) -> bool:
    method = methods.published_key(trainer)
    return any(key[0] == method for key in table)


def note(protocol: str) -> str:
    return (f"published: mmrl/results/published/{FILES[protocol]}, with each value's source in that folder's "
            "provenance.csv (some copied from secondary sources, see its README); blank = not found")
