"""Dataset facts the sweep and the tables need: stems, display names, order, rough sizes.

Stems are the names of configs/datasets/<stem>.yaml and the directory names under output/
(docs/protocol.md#datasets-split-files-and-names).  Display names are DATASET.NAME, which the
published CSVs also use.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from mmrl.config import configs_dir

DEMO = "demo"

# Paper table order (ImageNet first); the authors' drivers loop in another order, which
# does not matter because every run is independent of the others.
B2N_DATASETS = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
)
FS_DATASETS = B2N_DATASETS
CD_SOURCE = "imagenet"
CD_TARGETS = tuple(d for d in B2N_DATASETS if d != "imagenet")
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")

_NAMES = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DescribableTextures",
    "eurosat": "EuroSAT", "ucf101": "UCF101", "imagenetv2": "ImageNetV2",
    "imagenet_sketch": "ImageNetSketch", "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR",
}

# (classes, test images), the published sizes; only used to order jobs by cost.
_SIZES = {
    "imagenet": (1000, 50000), "caltech101": (100, 2465), "oxford_pets": (37, 3669),
    "stanford_cars": (196, 8041), "oxford_flowers": (102, 2463), "food101": (101, 30300),
    "fgvc_aircraft": (100, 3333), "sun397": (397, 19850), "dtd": (47, 1692),
    "eurosat": (10, 8100), "ucf101": (101, 3783), "imagenetv2": (1000, 10000),
    "imagenet_sketch": (1000, 50889), "imagenet_a": (200, 7500), "imagenet_r": (200, 30000),
}

KNOWN_STEMS = tuple(_NAMES) + (DEMO,)


def dataset_yaml(stem: str) -> Path:
    return configs_dir() / "datasets" / f"{stem}.yaml"


def display_name(stem: str) -> str:
    """DATASET.NAME for a stem (read from its YAML when it is not one of the 15)."""
    if stem in _NAMES:
        return _NAMES[stem]
    try:
        data = yaml.safe_load(dataset_yaml(stem).read_text()) or {}
        return str(data["DATASET"]["NAME"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return stem


def sizes(stem: str) -> tuple[int, int]:
    """(classes, test images); small made-up numbers for unknown (synthetic) datasets."""
    return _SIZES.get(stem, (10, 100))
