"""What the layout writers write with: their context (the spec, the sizes, the seeded random
stream), images with one colour per class, text lines, MATLAB files."""
from __future__ import annotations

import colorsys
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmrl.data.items import Item
from mmrl.data.splits import write_split
from mmrl.datasets.spec import DatasetSpec


@dataclass
class SyntheticContext:
    spec: DatasetSpec
    dataset_dir: Path
    n_classes: int | None
    n_per_class: int
    image_size: tuple[int, int]
    with_split_json: bool
    seed: int
    rng: random.Random

    def names(self, real: Sequence[str], default: int, prefix: str = "class") -> list[str]:
        """``n_classes`` names: the real ones first, then made-up ``<prefix>_<k>`` names."""
        n = self.n_classes or default
        extra = [f"{prefix}_{k:03d}" for k in range(len(real), n)]
        return list(real[:n]) + extra

    def image(self, path: Path, label: int, n_labels: int, index: int) -> None:
        write_image(path, label, n_labels, index, self.image_size, self.seed)

    def split_json(self, train: list[Item], val: list[Item], test: list[Item], prefix: Path) -> None:
        if self.with_split_json:
            write_split(train, val, test, self.dataset_dir / self.spec.split_file, str(prefix))


def class_colour(label: int, n_labels: int) -> tuple[int, int, int]:
    """Evenly spaced hues; two brightness rings keep many classes apart."""
    hue = (label * 0.61803398875) % 1.0 if n_labels > 12 else label / max(n_labels, 1)
    value = 0.95 if label % 2 == 0 else 0.6
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
    return int(r * 255), int(g * 255), int(b * 255)


def write_image(path: Path, label: int, n_labels: int, index: int, size: tuple[int, int], seed: int) -> None:
    w, h = size
    rng = np.random.default_rng([seed, label, index])
    base = np.array(class_colour(label, n_labels), dtype=np.float32)
    img = base[None, None, :] + rng.normal(0.0, 8.0, size=(h, w, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, format=fmt, quality=95)


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def savemat(path: Path, data: dict) -> None:
    """scipy's savemat, with the timestamped 116-byte text header made constant (determinism)."""
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), data)
    with open(path, "r+b") as f:
        f.write(b"MATLAB 5.0 MAT-file, written by mmrl.datatools.synthetic".ljust(116, b" "))


def sizes(n: int) -> tuple[int, int]:
    """(trainval, test) counts for datasets with an official test list: ~70/30."""
    n_test = max(1, round(n * 0.3))
    return n - n_test, n_test
