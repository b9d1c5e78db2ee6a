"""Dataset facts the sweep and the tables need, read from the dataset specs: stems, display
names, order, protocol roles, rough sizes.

The protocols' dataset lists are the built-in specs'; a plug-in dataset (:mod:`mmrl.plugins`)
runs where ``--datasets`` names it, and is looked up in the registry by stem.

Stems are the names of configs/datasets/<stem>.yaml and the directory names under output/
(docs/protocol.md#datasets-split-files-and-names).  Display names are DATASET.NAME, which the
published CSVs also use.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from mmrl.config import config_file
from mmrl.datasets import registry
from mmrl.datasets.specs import SPECS as _SPECS
from mmrl.errors import DatasetError
DEMO = next(s.stem for s in _SPECS if s.builtin_demo)


def _with(role: str) -> tuple[str, ...]:
    return tuple(s.stem for s in _SPECS if role in s.benchmarks)


# Paper table order (the specs' order, ImageNet first); the authors' drivers loop in another
# order, which does not matter because every run is independent of the others.
B2N_DATASETS = _with("b2n")
FS_DATASETS = _with("fs")
(CD_SOURCE,) = _with("cd_source")
CD_TARGETS = _with("cd")
DG_TARGETS = _with("dg")
_NAMES = {s.stem: s.display_name for s in _SPECS if not s.builtin_demo}
# (classes, test images), the published sizes; only used to order jobs by cost.
_SIZES = {s.stem: (s.num_classes, s.test) for s in _SPECS if s.num_classes and s.test}

KNOWN_STEMS = tuple(_NAMES) + (DEMO,)


def dataset_yaml(stem: str) -> Path:
    return config_file("datasets", f"{stem}.yaml")


def display_name(stem: str) -> str:
    """DATASET.NAME for a stem (a plug-in's from the registry, else read from its YAML)."""
    if stem in _NAMES:
        return _NAMES[stem]
    try:
        spec = registry.get_spec(stem, exact_case=True)
        if spec.stem == stem:
            return spec.display_name
    except DatasetError:
        pass
    try:
        data = yaml.safe_load(dataset_yaml(stem).read_text()) or {}
        return str(data["DATASET"]["NAME"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return stem


def sizes(stem: str) -> tuple[int, int]:
    """(classes, test images); small made-up numbers when unknown (synthetic or plug-in datasets)."""
    return _SIZES.get(stem, (10, 100))
