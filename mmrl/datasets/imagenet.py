"""ImageNet: ``imagenet/images/{train,val}/<wnid>/*.JPEG`` + ``imagenet/classnames.txt``; 1,000 classes.

Labels = index of the wnid folder in the sorted folder list; names from classnames.txt
(``<wnid> <name with spaces>``). ``test`` = images/val; the val list IS the test list, and
few-shot sampling touches train only.

Difference from the reference: images inside a class folder are SORTED by file name here,
while the reference takes os.listdir order (filesystem dependent), so few-shot subsets drawn
by the two differ unless a reference cache is present. To reproduce a reference run exactly,
put its ``imagenet/preprocessed.pkl`` (read here instead of listing folders) or its
``split_fewshot/shot_K-seed_S.pkl`` into the dataset folder; both are read through a
restricted unpickler and their absolute paths are re-rooted onto this dataset folder.

Without ``classnames.txt`` our reconstruction (mmrl/resources/imagenet_classnames_wnid.txt)
is used, with a warning.
"""
from __future__ import annotations

import logging
import os

from mmrl.data.fileio import numbered_lines
from mmrl.data.items import Item
from mmrl.data.legacy_pickle import load_legacy_items
from mmrl.data.resources import resource_path
from mmrl.data.splits import listdir_nohidden
from mmrl.datasets.base import DatasetBase
from mmrl.errors import DatasetError

log = logging.getLogger("mmrl.data")


def read_classnames(path: str) -> dict[str, str]:
    """``<wnid> <class name>`` lines -> ordered {wnid: name} (file order kept)."""
    out: dict[str, str] = {}
    for n, line in numbered_lines(path):
        parts = line.split(" ")
        if len(parts) < 2:
            raise DatasetError(f"{path}:{n}: expected '<wnid> <class name>', got {line!r}")
        out[parts[0]] = " ".join(parts[1:])
    return out


def dataset_classnames(ds: DatasetBase) -> dict[str, str]:
    path = os.path.join(ds.dataset_dir, "classnames.txt")
    if not os.path.isfile(path):
        fallback = resource_path("imagenet_classnames_wnid.txt")
        log.warning("%s: %s not found; using mmrl's reconstruction %s (copy CoOp's classnames.txt there, "
                    "e.g. with %s)", ds.NAME, path, fallback, ds.prepare_hint())
        path = str(fallback)
    return read_classnames(path)


def class_folders(image_dir: str) -> list[str]:
    """Class folders (directories only, non-hidden), sorted: README.txt and the like are skipped."""
    return listdir_nohidden(image_dir, dirs_only=True, sort=True)


def folder_items(folder: str, label: int, classname: str) -> list[Item]:
    return [Item(os.path.join(folder, f), label, classname)
            for f in listdir_nohidden(folder, files_only=True, sort=True)]


def lookup(names: dict[str, str], wnid: str, where: str) -> str:
    try:
        return names[wnid]
    except KeyError:
        raise DatasetError(f"Class folder {wnid!r} in {where} has no entry in classnames.txt.") from None


class ImageNet(DatasetBase):

    @property
    def preprocessed_path(self) -> str:
        return os.path.join(self.dataset_dir, "preprocessed.pkl")

    def _from_preprocessed(self):
        log.info("Loading preprocessed ImageNet lists from %s", self.preprocessed_path)
        data = load_legacy_items(self.preprocessed_path, self.dataset_dir, self.FOLDER)
        if "train" not in data or "test" not in data:
            raise DatasetError(f"{self.preprocessed_path} must hold 'train' and 'test' lists.")
        train, test = data["train"], data["test"]
        # The reference does not re-check; we check a spread sample to catch a moved root early.
        sample = [*train[:: max(1, len(train) // 500)], *test[:: max(1, len(test) // 500)]]
        missing = [it.impath for it in sample if not os.path.isfile(it.impath)]
        if missing:
            raise DatasetError(f"{self.preprocessed_path} lists images not found under {self.dataset_dir} "
                               f"(e.g. {missing[0]}). Move the file away to list the folders instead.")
        return train, None, test

    def load(self):
        self.check_dataset_dir()
        if os.path.isfile(self.preprocessed_path):
            return self._from_preprocessed()
        self.require("images/train", "images/val")
        names = dataset_classnames(self)
        train_dir, val_dir = os.path.join(self.image_dir, "train"), os.path.join(self.image_dir, "val")
        wnids = class_folders(train_dir)
        label_of = {w: i for i, w in enumerate(wnids)}
        stray = [w for w in class_folders(val_dir) if w not in label_of]
        if stray:
            raise DatasetError(f"{val_dir} has class folders that are not in {train_dir}: {stray[:10]}. "
                               "The val images must be sorted into the same wnid folders as train.")
        train, test = [], []
        for wnid in wnids:
            name = lookup(names, wnid, train_dir)
            train += folder_items(os.path.join(train_dir, wnid), label_of[wnid], name)
            if os.path.isdir(os.path.join(val_dir, wnid)):
                test += folder_items(os.path.join(val_dir, wnid), label_of[wnid], name)
        if not test:
            raise DatasetError(f"{val_dir} holds no images; sort the ImageNet val images into wnid folders.")
        return train, None, test


class WnidFolderTestSet(DatasetBase):
    """A test-only ImageNet variant: ``<image_dir>/<wnid>/*``, labels = sorted folder index.

    Images inside a folder are sorted (the reference uses os.listdir order; only the order of
    test batches differs). ``EXPECTED_WNIDS`` names a resource listing the allowed folders.
    """

    TEST_ONLY = True
    EXPECTED_WNIDS: str | None = None

    def check_folders(self, wnids: list[str]) -> None:
        if self.EXPECTED_WNIDS is None:
            return
        expected = set(resource_path(self.EXPECTED_WNIDS).read_text(encoding="utf-8").split())
        unexpected = [w for w in wnids if w not in expected]
        if unexpected:
            raise DatasetError(
                f"{self.NAME}: {self.image_dir} has {len(unexpected)} folder(s) that are not {self.NAME} classes: "
                f"{unexpected[:20]}. Expected only the {len(expected)} wnids of "
                f"mmrl/resources/{self.EXPECTED_WNIDS}; remove the extra folders.")
        if len(wnids) != len(expected):
            log.warning("%s: %d of the %d class folders present; labels are the indices among the folders present",
                        self.NAME, len(wnids), len(expected))

    def load(self):
        self.check_dataset_dir()
        self.require(os.path.relpath(self.image_dir, self.dataset_dir))
        names = dataset_classnames(self)
        wnids = class_folders(self.image_dir)
        if not wnids:
            raise DatasetError(f"{self.NAME}: no class folders in {self.image_dir}.")
        self.check_folders(wnids)
        test = []
        for label, wnid in enumerate(wnids):
            test += folder_items(os.path.join(self.image_dir, wnid), label, lookup(names, wnid, self.image_dir))
        return test, None, test
