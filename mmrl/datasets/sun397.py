"""SUN397: ``sun397/SUN397/<letter>/<name>[/<sub>]/sun_*.jpg``; 397 classes.

Without ``split_zhou_SUN397.json``: class keys are the lines of ``ClassName.txt`` minus the
leading "/" (label = line index); names are the key's components after the letter, in
REVERSED order (``a/apartment_building/outdoor`` -> ``outdoor apartment_building``);
Training_01 -> 80/20 train/val, Testing_01 -> test.
"""
import os

from mmrl.data.fileio import numbered_lines
from mmrl.data.items import Item
from mmrl.data.splits import Splits, split_trainval
from mmrl.datasets.base import JsonSplitDataset
from mmrl.errors import DatasetError


def sun_classname(key: str) -> str:
    """``a/apartment_building/outdoor`` -> ``outdoor apartment_building``."""
    return " ".join(reversed(key.split("/")[1:]))


class SUN397(JsonSplitDataset):

    def _read_list(self, fname: str, key2lab: dict[str, int]) -> list[Item]:
        path = os.path.join(self.dataset_dir, fname)
        items = []
        for n, rel in numbered_lines(path):
            rel = rel[1:] if rel.startswith("/") else rel
            key = os.path.dirname(rel)
            if key not in key2lab:
                raise DatasetError(f"{path}:{n}: class {key!r} is not in ClassName.txt.")
            items.append(Item(os.path.join(self.image_dir, rel), key2lab[key], sun_classname(key)))
        return items

    def generate_split(self) -> Splits:
        with open(os.path.join(self.dataset_dir, "ClassName.txt"), encoding="utf-8") as f:
            keys = [line.strip()[1:] if line.strip().startswith("/") else line.strip() for line in f if line.strip()]
        key2lab = {k: i for i, k in enumerate(keys)}
        trainval = self._read_list("Training_01.txt", key2lab)
        test = self._read_list("Testing_01.txt", key2lab)
        train, val = split_trainval(trainval)
        return train, val, test
