"""Dataset loader base classes and the result record of :func:`mmrl.datasets.build_dataset`.

A loader lists a dataset's (train, val, test) items. Its facts (NAME, STEM, FOLDER,
IMAGE_SUBDIR, ...) come from the dataset's spec (:mod:`mmrl.datasets.specs`): the registry
hands out the loader class with them set. A split-JSON dataset needs no loader code at all
(the spec's default loader is :class:`JsonSplitDataset`), which reads
``<folder>/split_zhou_<NAME>.json`` and, without it, generates the reference 50/20/30 folder
split (override :meth:`generate_split` for other raw layouts).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import ClassVar

from mmrl.data.fileio import relpath_in
from mmrl.data.items import Item
from mmrl.data.splits import Splits, check_images_exist, read_split, split_filename, split_folders, write_split
from mmrl.errors import DatasetError

log = logging.getLogger("mmrl.data")


class DatasetBase:
    """One dataset on disk: where it lives and how to list its (train, val, test) items."""

    # Set from the spec by the registry (mmrl.datasets.registry.get_dataset_class):
    NAME: ClassVar[str] = ""        # DATASET.NAME, e.g. "EuroSAT"
    STEM: ClassVar[str] = ""        # config/script stem, e.g. "eurosat"
    FOLDER: ClassVar[str] = ""      # folder under DATASET.ROOT, e.g. "eurosat"
    IMAGE_SUBDIR: ClassVar[str] = "images"   # image folder inside FOLDER ("" = FOLDER itself)
    TEMPLATE: ClassVar[str | None] = None    # text template; None = mmrl_text_templates.tsv
    TEST_ONLY: ClassVar[bool] = False        # ImageNet variants: train_x = test, no val, no few-shot
    VAL_IS_TEST: ClassVar[bool] = False      # ImageNet: val = test, few-shot on train only
    PREFIX_IS_DATASET_DIR: ClassVar[bool] = False  # StanfordCars: split paths relative to FOLDER

    def __init__(self, root: str | os.PathLike) -> None:
        self.root_arg = os.fspath(root)
        self.root = os.path.abspath(os.path.expanduser(self.root_arg))
        self.dataset_dir = os.path.join(self.root, self.FOLDER)

    # -- paths --------------------------------------------------------------------------------
    @property
    def image_dir(self) -> str:
        return os.path.join(self.dataset_dir, self.IMAGE_SUBDIR) if self.IMAGE_SUBDIR else self.dataset_dir

    @property
    def split_prefix(self) -> str:
        """The folder split paths are relative to."""
        return self.dataset_dir if self.PREFIX_IS_DATASET_DIR else self.image_dir

    def legacy_fewshot_pickle(self, num_shots: int, seed: int) -> str:
        """Where the reference code cached few-shot subsets (read if present)."""
        return os.path.join(self.dataset_dir, "split_fewshot", f"shot_{num_shots}-seed_{seed}.pkl")

    # -- checks -------------------------------------------------------------------------------
    def prepare_hint(self) -> str:
        return f"`mmrl data prepare {self.STEM} --root {self.root_arg or '.'}`"

    def check_dataset_dir(self) -> None:
        if not self.root_arg:  # never the current directory by accident
            raise DatasetError(f"{self.NAME}: DATASET.ROOT is not set. Pass --root with the folder that contains "
                               f"'{self.FOLDER}/' (only the Demo dataset runs without one).")
        if not os.path.isdir(self.dataset_dir):
            raise DatasetError(
                f"{self.NAME}: dataset folder {self.dataset_dir} not found (DATASET.ROOT = {self.root_arg!r}). "
                f"Set DATASET.ROOT to the folder that contains '{self.FOLDER}/', or download and lay it out "
                f"with {self.prepare_hint()}.")

    def require(self, *relpaths: str, purpose: str = "") -> None:
        """Fail with the expected layout when any of these paths (relative to FOLDER) is missing."""
        missing = [os.path.join(self.dataset_dir, p) for p in relpaths
                   if not os.path.exists(os.path.join(self.dataset_dir, p))]
        if missing:
            why = f" (needed {purpose})" if purpose else ""
            raise DatasetError(
                f"{self.NAME}: wrong layout in {self.dataset_dir}{why}; missing:\n  " + "\n  ".join(missing)
                + f"\nSee the expected layout with {self.prepare_hint()} (or check it with `mmrl data verify {self.STEM} --root {self.root_arg or '.'}`).")

    # -- listing ------------------------------------------------------------------------------
    def load(self) -> tuple[list[Item], list[Item] | None, list[Item]]:
        """(train, val, test) in the dataset's own labels, before few-shot and subsampling."""
        raise NotImplementedError


class JsonSplitDataset(DatasetBase):
    """A dataset described by ``split_zhou_<NAME>.json``; generated from raw files if absent."""

    SPLIT_IGNORED: ClassVar[tuple[str, ...]] = ()   # folders skipped by the folder split
    SPLIT_RENAMES: ClassVar[dict[str, str]] = {}    # folder -> class name (after labelling)
    RAW_FILES: ClassVar[tuple[str, ...]] = ()       # extra files needed only to generate the split
    IMAGE_FOLDERS: ClassVar[tuple[str, ...]] = ()   # image folders to check; () = (IMAGE_SUBDIR,)

    @property
    def split_path(self) -> str:
        return os.path.join(self.dataset_dir, split_filename(self.NAME))

    def load(self) -> Splits:
        self.check_dataset_dir()
        self.require(*self.IMAGE_FOLDERS or (self.IMAGE_SUBDIR,), purpose="for the images")
        if os.path.isfile(self.split_path):
            return read_split(self.split_path, self.split_prefix)
        self.require(*self.RAW_FILES, purpose=f"to generate {os.path.basename(self.split_path)}")
        log.warning("%s: no %s; generating it by the reference rules from the raw files. It will NOT match "
                    "the published split (download it with %s to reproduce published numbers).",
                    self.NAME, self.split_path, self.prepare_hint())
        train, val, test = self.generate_split()
        check_images_exist([*train, *val, *test], f"{self.NAME}'s raw annotation files",
                           f"The annotations and the images in {self.dataset_dir} disagree; re-extract them.")
        write_split(train, val, test, self.split_path, self.split_prefix)
        return train, val, test

    def generate_split(self) -> Splits:
        """Default: the reference 50/20/30 split of ``image_dir/<class>/`` folders."""
        return split_folders(self.image_dir, ignored=self.SPLIT_IGNORED, renames=self.SPLIT_RENAMES)


@dataclass
class DatasetSplits:
    """What a run needs from a dataset: the final lists and the derived class names."""

    name: str
    stem: str
    dataset_dir: str        # absolute
    image_dir: str          # the prefix split paths are relative to (StanfordCars: dataset_dir)
    train_x: list[Item]
    val: list[Item] | None
    test: list[Item]
    num_classes: int
    lab2cname: dict[int, str]
    classnames: list[str]   # ordered by label; the text prompts are built from these
    template: str

    def relpath(self, item: Item) -> str:
        """Path of ``item`` relative to the dataset folder, e.g. ``2750/Forest/Forest_12.jpg``."""
        return relpath_in(item.impath, self.dataset_dir)

