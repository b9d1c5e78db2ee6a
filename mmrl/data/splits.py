"""Split JSON files (``split_zhou_<Name>.json``) and the reference split generators.

File format (docs/protocol.md#datasets-split-files-and-names):
``{"train": [...], "val": [...], "test": [...]}``, each entry
``[<path relative to the image prefix>, <label>, <class name>]``. List order is kept exactly:
few-shot sampling iterates over it, so reordering would change every subset.

The generators reproduce the reference rules with the Python RNG passed in (the global
``random`` module by default, so a seeded run consumes the same stream as the reference).
"""
from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mmrl.data.fileio import atomic_write_text
from mmrl.data.items import Item
from mmrl.errors import DatasetError

log = logging.getLogger("mmrl.data")

SPLIT_KEYS = ("train", "val", "test")
Splits = tuple[list[Item], list[Item], list[Item]]


def split_filename(dataset_name: str) -> str:
    return f"split_zhou_{dataset_name}.json"


def listdir_nohidden(path: str, *, dirs_only: bool = False, files_only: bool = False,
                     sort: bool = False) -> list[str]:
    """Entries of ``path`` not starting with "." (os.listdir order unless ``sort``).

    Uses scandir so that filtering ImageNet's 1.28M files costs no extra stat calls.
    """
    with os.scandir(path) as it:
        names = [e.name for e in it if not e.name.startswith(".")
                 and (not dirs_only or e.is_dir()) and (not files_only or e.is_file())]
    if sort:
        names.sort()
    return names


# ---------------------------------------------------------------------------------------------
# Reading and writing

def _relative(impath: str, prefix: str) -> str:
    # The reference removes the prefix by plain substring replacement, then one leading "/".
    rel = impath.replace(prefix, "")
    return rel[1:] if rel.startswith("/") else rel


def split_to_json(train: Sequence[Item], val: Sequence[Item], test: Sequence[Item], prefix: str) -> str:
    obj = {key: [[_relative(it.impath, prefix), it.label, it.classname] for it in items]
           for key, items in zip(SPLIT_KEYS, (train, val, test))}
    # Same layout as the published files (4-space indent, "," / ": " separators).
    return json.dumps(obj, indent=4, separators=(",", ": "))


def write_split(train: Sequence[Item], val: Sequence[Item], test: Sequence[Item],
                path: str | os.PathLike, prefix: str) -> None:
    atomic_write_text(path, split_to_json(train, val, test, prefix))
    log.info("Saved split to %s", path)


def _parse_entries(entries: Any, key: str, path: str, prefix: str) -> list[Item]:
    if not isinstance(entries, list):
        raise DatasetError(f"Split file {path}: key {key!r} must be a list of [path, label, classname] "
                           "entries. Delete the file and download the published split again.")
    items = []
    for i, entry in enumerate(entries):
        ok = isinstance(entry, (list, tuple)) and len(entry) == 3
        rel, label, cname = entry if ok else (None, None, None)
        if not (ok and isinstance(rel, str) and rel and not os.path.isabs(rel) and ".." not in rel.split("/")
                and isinstance(label, int) and not isinstance(label, bool) and label >= 0):
            raise DatasetError(f"Split file {path}: entry {i} of {key!r} is {entry!r}, expected "
                               "[relative path inside the dataset, label >= 0, classname]. Delete the file and "
                               "download the published split again.")
        items.append(Item(impath=os.path.join(prefix, rel), label=label, classname=str(cname)))
    return items


def _check_labels(path: str, *lists: Sequence[Item]) -> None:
    """One class name per label across the whole file: otherwise class names would be paired
    with the wrong labels. (Two labels may share a name, as ImageNet's two "missile"s and two "sunglasses" do.)"""
    name_of: dict[int, str] = {}
    for it in (it for lst in lists for it in lst):
        if name_of.setdefault(it.label, it.classname) != it.classname:
            raise DatasetError(f"Split file {path}: label {it.label} is both {name_of[it.label]!r} and "
                               f"{it.classname!r}. Delete the file and download the published split again.")
    train, *others = lists
    if not train:
        return  # a test-only dataset's file
    trained = {it.label for it in train}
    gaps = sorted(set(range(max(trained) + 1)) - trained)
    if gaps:
        raise DatasetError(f"Split file {path}: 'train' has labels up to {max(trained)} but none of {gaps[:10]}, so "
                           f"the class names would be misaligned with the labels. Delete the file and download the "
                           f"published split again.")
    for key, lst in zip(SPLIT_KEYS[1:], others):
        for i, it in enumerate(lst):
            if it.label not in trained:
                raise DatasetError(f"Split file {path}: entry {i} of {key!r} ({it.impath}) has label {it.label} "
                                   f"({it.classname!r}), which no 'train' entry has, so no classifier could score "
                                   f"it. Delete the file and download the published split again.")


def check_images_exist(items: Iterable[Item], source: str, fix: str) -> None:
    """Raise one DatasetError listing missing images (the reference fails on the first one)."""
    missing = [it.impath for it in items if not os.path.isfile(it.impath)]
    if missing:
        shown = "\n  ".join(missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DatasetError(f"{source} references {len(missing)} image(s) that do not exist:\n  {shown}{more}\n{fix}")


def read_split(path: str | os.PathLike, prefix: str, *, check_exists: bool = True) -> Splits:
    """Read a split JSON; relative paths are joined to ``prefix``; order preserved."""
    path = os.fspath(path)
    log.info("Reading split from %s", path)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"Split file {path} cannot be read as JSON ({type(e).__name__}: {e}). Delete it and "
                           "download the published split again.") from None
    if not isinstance(obj, Mapping) or any(k not in obj for k in SPLIT_KEYS):
        raise DatasetError(f"Split file {path} must be a JSON object with keys 'train', 'val', 'test'. "
                           "Delete it and download the published split again.")
    train, val, test = (_parse_entries(obj[k], k, path, prefix) for k in SPLIT_KEYS)
    _check_labels(path, train, val, test)
    if check_exists:
        check_images_exist([*train, *val, *test], f"Split file {path}",
                           f"Expected the images under {prefix}; check the dataset layout "
                           "(`mmrl data verify`) or re-extract the images.")
    return train, val, test


# ---------------------------------------------------------------------------------------------
# Generators (reference rules; consume the given RNG exactly like the reference)

def split_trainval(trainval: Sequence[Item], p_val: float = 0.2, rng: Any = random) -> tuple[list[Item], list[Item]]:
    """Per class (tracker order): shuffle the index list, first round(n*p_val) -> val."""
    p_trn = 1 - p_val
    log.info("Splitting trainval into %d%% train and %d%% val", round(p_trn * 100), round(p_val * 100))
    tracker: dict[int, list[int]] = {}
    for idx, item in enumerate(trainval):
        tracker.setdefault(item.label, []).append(idx)
    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            raise DatasetError(f"Class {label} ({trainval[idxs[0]].classname}) has {len(idxs)} trainval "
                               f"image(s): too few for a {round(p_val * 100)}% val split.")
        rng.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def split_groups(groups: Iterable[list[Item]], p_trn: float = 0.5, p_val: float = 0.2,
                 rng: Any = random) -> Splits:
    """Per group (in the given order): shuffle in place, cut round()ed train/val, rest test."""
    train, val, test = [], [], []
    for group in groups:
        rng.shuffle(group)
        n = len(group)
        n_train, n_val = round(n * p_trn), round(n * p_val)
        n_test = n - n_train - n_val
        if min(n_train, n_val, n_test) <= 0:
            where = os.path.dirname(group[0].impath) if group else "?"
            raise DatasetError(f"Class {group[0].classname!r} ({where}) has {n} image(s): too few for a "
                               f"{round(p_trn * 100)}/{round(p_val * 100)}/{100 - round((p_trn + p_val) * 100)} split.")
        train.extend(group[:n_train])
        val.extend(group[n_train:n_train + n_val])
        test.extend(group[n_train + n_val:])
    return train, val, test


def folder_classes(image_dir: str, ignored: Iterable[str] = ()) -> list[str]:
    """Class folders in label order: non-hidden, minus ``ignored``, plain (case-sensitive) sort."""
    ignored = set(ignored)
    return sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)


def split_folders(image_dir: str, *, p_trn: float = 0.5, p_val: float = 0.2, ignored: Iterable[str] = (),
                  renames: Mapping[str, str] | None = None, rng: Any = random) -> Splits:
    """Reference 50/20/30 split of class folders (Caltech101, DTD, EuroSAT, Food101).

    Labels follow the case-sensitive sort of the folder names; renames apply after labelling.
    Images are taken in os.listdir order, as the reference does (so a regenerated split is
    filesystem dependent: prefer the published JSON).
    """
    renames = renames or {}
    p_test = 1 - p_trn - p_val
    log.info("Splitting into %d%% train, %d%% val, and %d%% test",
             round(p_trn * 100), round(p_val * 100), round(p_test * 100))
    groups = []
    for label, folder in enumerate(folder_classes(image_dir, ignored)):
        cdir = os.path.join(image_dir, folder)
        name = renames.get(folder, folder)
        groups.append([Item(os.path.join(cdir, f), label, name) for f in listdir_nohidden(cdir)])
    return split_groups(groups, p_trn, p_val, rng)


def split_by_label_groups(items: Sequence[Item], p_trn: float = 0.5, p_val: float = 0.2,
                          rng: Any = random) -> Splits:
    """Group items by label in tracker order (first appearance), then :func:`split_groups`.

    Used by the Flowers generator, whose label order is that of imagelabels.mat.
    """
    log.info("Splitting data into %d%% train, %d%% val, and %d%% test",
             round(p_trn * 100), round(p_val * 100), round((1 - p_trn - p_val) * 100))
    tracker: dict[int, list[Item]] = {}
    for item in items:
        tracker.setdefault(item.label, []).append(item)
    return split_groups(tracker.values(), p_trn, p_val, rng)
