"""build_dataset: dataset folder -> split -> few-shot subset -> base/new subset.

The rules: docs/protocol.md, sections "Datasets: split files and names" to "Base and new classes".
"""
from __future__ import annotations

import logging
import os

from mmrl.data.fewshot import load_or_create_fewshot
from mmrl.data.items import Item
from mmrl.data.resources import DEFAULT_TEMPLATE, text_template
from mmrl.data.subsample import subsample_classes
from mmrl.datasets.base import DatasetBase, DatasetSplits
from mmrl.datasets.registry import get_dataset_class
from mmrl.errors import ConfigError, DatasetError

log = logging.getLogger("mmrl.data")


def _template(cls: type[DatasetBase]) -> str:
    return cls.TEMPLATE or text_template(cls.NAME) or DEFAULT_TEMPLATE


def _class_names(train_x: list[Item]) -> tuple[int, dict[int, str], list[str]]:
    lab2cname = {}
    for it in train_x:
        lab2cname.setdefault(it.label, it.classname)
    num_classes = max(lab2cname) + 1
    # classnames ordered by label; a label missing from train_x would shift every later name
    missing = [lab for lab in range(num_classes) if lab not in lab2cname]
    if missing:
        raise DatasetError(f"Labels {missing[:10]} have no training image, so the class-name list would be "
                           "misaligned with the labels; check the split file.")
    return num_classes, dict(sorted(lab2cname.items())), [lab2cname[i] for i in range(num_classes)]


def build_dataset(name: str, root: str | os.PathLike, *, num_shots: int = -1, seed: int = -1,
                  subsample: str = "all", fewshot_dir: str | os.PathLike | None = None) -> DatasetSplits:
    """Build the (train_x, val, test) lists of one run.

    Uses the GLOBAL Python ``random`` for split generation and few-shot sampling, so the caller
    seeds it (``random.seed(S)``) before calling; ``seed`` only names the few-shot file.
    """
    cls = get_dataset_class(name)
    ds = cls(root)
    train, val, test = ds.load()
    where = getattr(ds, "split_path", ds.dataset_dir)
    if not test:
        raise DatasetError(f"{cls.NAME}: the test split is empty ({where}); check the split file and the layout.")

    if cls.TEST_ONLY:
        if num_shots >= 1:
            log.info("%s is test-only: DATASET.NUM_SHOTS is ignored", cls.NAME)
        if subsample != "all":
            raise ConfigError(f"{cls.NAME} is a test-only dataset (all classes); DATASET.SUBSAMPLE_CLASSES must be "
                              f"'all', not {subsample!r}.")
        train_x, val = list(test), None
    else:
        if not train:
            raise DatasetError(f"{cls.NAME}: the train split is empty ({where}); check the split file.")
        if num_shots >= 1:
            train, val = load_or_create_fewshot(
                name=cls.NAME, stem=cls.STEM, folder=cls.FOLDER, dataset_dir=ds.dataset_dir, train=train,
                val=val, num_shots=num_shots, seed=seed, fewshot_dir=fewshot_dir,
                legacy_pickle=ds.legacy_fewshot_pickle(num_shots, seed), sample_val=not cls.VAL_IS_TEST)
        if cls.VAL_IS_TEST:
            train_x, test = subsample_classes(train, test, subsample=subsample)
            val = test
        else:
            train_x, val, test = subsample_classes(train, val, test, subsample=subsample)

    num_classes, lab2cname, classnames = _class_names(train_x)
    return DatasetSplits(name=cls.NAME, stem=cls.STEM, dataset_dir=ds.dataset_dir, image_dir=ds.split_prefix,
                         train_x=train_x, val=val or None, test=test, num_classes=num_classes,
                         lab2cname=lab2cname, classnames=classnames, template=_template(cls))
