"""FGVCAircraft: the ``data/`` folder of fgvc-aircraft-2013b renamed ``fgvc_aircraft/``; 100 classes.

No split JSON is read or written: the official variant train/val/test lists are used as is.
Classes = stripped lines of ``variants.txt`` (label = line index); each list line is
``<image id> <variant name, may contain spaces>``. No RNG is consumed.
"""
import os

from mmrl.data.fileio import numbered_lines
from mmrl.data.items import Item
from mmrl.data.splits import check_images_exist
from mmrl.datasets.base import DatasetBase
from mmrl.errors import DatasetError

SPLIT_FILES = ("images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")


class FGVCAircraft(DatasetBase):

    def _read(self, fname: str, cname2lab: dict[str, int]) -> list[Item]:
        path = os.path.join(self.dataset_dir, fname)
        items = []
        for n, line in numbered_lines(path):
            parts = line.split(" ")
            image, cname = parts[0] + ".jpg", " ".join(parts[1:])
            if cname not in cname2lab:
                raise DatasetError(f"{path}:{n}: variant {cname!r} is not in variants.txt.")
            items.append(Item(os.path.join(self.image_dir, image), cname2lab[cname], cname))
        return items

    def load(self):
        self.check_dataset_dir()
        self.require("images", "variants.txt", *SPLIT_FILES)
        with open(os.path.join(self.dataset_dir, "variants.txt"), encoding="utf-8") as f:
            classnames = [line.strip() for line in f if line.strip()]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        train, val, test = (self._read(name, cname2lab) for name in SPLIT_FILES)
        check_images_exist([*train, *val, *test], f"{self.NAME} lists in {self.dataset_dir}",
                           "Re-extract fgvc-aircraft-2013b/data/images into fgvc_aircraft/images.")
        return train, val, test
