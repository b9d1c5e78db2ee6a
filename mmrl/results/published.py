"""Published numbers shipped as package data (mmrl/results/published/*.csv, see its README).

Every value there comes from secondary sources listed in sources.csv / provenance.csv; an
empty cell means "not found" and stays blank in our tables.
"""
from __future__ import annotations

import csv
from pathlib import Path

from mmrl.results.aggregate import AVERAGE
from mmrl.trainers import registry

DATA_DIR = Path(__file__).resolve().parent / "published"
FILES = {"b2n": "b2n.csv", "cd": "cross_dataset.csv", "dg": "domain_generalization.csv", "fs": "few_shot.csv"}


def _method_key(trainer: str) -> str:
    """The method's name in the published files."""
    return registry.get(trainer).published_key if trainer in registry.names() else trainer


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


def load(protocol: str) -> dict[tuple[str, str, int | None], dict[str, float]]:
    """(method, DATASET.NAME or AVERAGE, shots) -> {metric: value}; only cells that have a value."""
    path = DATA_DIR / FILES[protocol]
    out: dict[tuple[str, str, int | None], dict[str, float]] = {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        method = row.get("method", "").strip()
        if protocol == "b2n":
            vals = {m: _num(row.get(m)) for m in ("base", "novel", "hm")}
            vals = {m: v for m, v in vals.items() if v is not None}
            if vals:
                out[(method, _dataset_key(row["dataset"]), None)] = vals
        elif protocol == "fs":
            v = _num(row.get("accuracy"))
            if v is not None:
                out[(method, _dataset_key(row["dataset"]), int(row["shots"]))] = {"accuracy": v}
        else:  # wide: one column per dataset
            for col, text in row.items():
                if col in ("paper", "method"):
                    continue
                v = _num(text)
                if v is not None:
                    out[(method, _dataset_key(col), None)] = {"accuracy": v}
    return out


def lookup(table, trainer: str, dataset_name: str, shots: int | None, metric: str) -> float | None:
    vals = table.get((_method_key(trainer), dataset_name, shots))
    return (vals or {}).get(metric)


def has_any(table, trainer: str) -> bool:
    method = _method_key(trainer)
    return any(key[0] == method for key in table)


def note(protocol: str) -> str:
    return (f"published: mmrl/results/published/{FILES[protocol]}, copied from secondary sources "
            "(see that folder's README and provenance.csv); blank = not found")
