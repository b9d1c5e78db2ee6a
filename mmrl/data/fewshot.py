"""Few-shot subsets: the reference sampler (docs/protocol.md#few-shot-subsets) and their on-disk store.

Sampling uses the Python RNG exactly like the reference: one ``random.sample(group, K)`` per
class, classes in tracker order (first appearance in the split list), train first, then val
with ``min(K, 4)`` in the same stream. The caller seeds the global ``random`` once before the
dataset is built; nothing here reseeds.

Subsets are stored as JSON lists of paths relative to the dataset folder, one file per
(dataset stem, K, seed): ``<fewshot_dir>/<stem>/shot_<K>-seed_<S>.json``, outside the data root
by default (``$MMRL_CACHE/fewshot``, else ``~/.cache/mmrl/fewshot``). A file is written
atomically once and never rewritten; it records a digest of the train split it was drawn from, and
a file drawn from another split is refused. If the dataset folder holds the reference cache
``split_fewshot/shot_K-seed_S.pkl`` it is used instead, so an earlier run's exact images are
reproduced.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmrl.data.fileio import atomic_write_text, cache_root, relpath_in
from mmrl.data.items import Item
from mmrl.data.legacy_pickle import load_legacy_items
from mmrl.errors import DatasetError

log = logging.getLogger("mmrl.data")
VAL_MAX_SHOTS = 4
FORMAT_VERSION = 1


def generate_fewshot(items: Sequence[Item], num_shots: int, rng: Any = random) -> list[Item]:
    """The reference sampler: K random items per class; classes with fewer keep all."""
    if num_shots < 1:
        return list(items)
    log.info("Creating a %d-shot dataset", num_shots)
    groups: dict[int, list[Item]] = {}
    for item in items:
        groups.setdefault(item.label, []).append(item)
    out: list[Item] = []
    short = []
    for label, group in groups.items():
        if len(group) >= num_shots:
            out.extend(rng.sample(group, num_shots))
        else:  # protocol behaviour: keep all, consume no RNG
            short.append(f"{label} ({group[0].classname}): {len(group)}")
            out.extend(group)
    if short:
        log.warning("%d class(es) have fewer than %d images and keep all of them: %s",
                    len(short), num_shots, "; ".join(short))
    return out


def default_fewshot_dir() -> Path:
    return cache_root() / "fewshot"


def fewshot_path(fewshot_dir: str | os.PathLike | None, stem: str, num_shots: int, seed: int) -> Path:
    root = Path(fewshot_dir).expanduser() if fewshot_dir else default_fewshot_dir()
    return root / stem / f"shot_{num_shots}-seed_{seed}.json"


def _stale(path: Path, why: str) -> DatasetError:
    return DatasetError(f"Few-shot file {path} is stale: {why}. It no longer matches the dataset; delete it "
                        f"(rm '{path}') and the subset is drawn again on the next run.")


def _check_counts(chosen: Sequence[Item], pool: Sequence[Item], k: int, key: str,
                  refuse: Callable[[str], DatasetError]) -> None:
    """Every class of the split has min(k, its size) distinct images in the subset, as the sampler
    draws them: a file for another K or another split, or an edited one, is refused."""
    if len({it.impath for it in chosen}) != len(chosen):
        raise refuse(f"its {key} list names an image twice")
    have, size = Counter(it.label for it in chosen), Counter(it.label for it in pool)
    wrong = [(lab, have.get(lab, 0), min(k, n)) for lab, n in sorted(size.items()) if have.get(lab, 0) != min(k, n)]
    if wrong:
        lab, got, want = wrong[0]
        raise refuse(f"{len(wrong)} class(es) of the {key} split have the wrong number of images for {k} shots "
                     f"(e.g. label {lab}: {got}, expected {want})")


def pool_sha256(pool: Sequence[Item], dataset_dir: str) -> str:
    """SHA-256 of the ordered (relative path, label) list a subset is drawn from: the draw depends on
    its order and content, so a file drawn from another split is not this split's subset."""
    h = hashlib.sha256()
    for it in pool:
        h.update(f"{relpath_in(it.impath, dataset_dir)}\t{it.label}\n".encode("utf-8"))
    return h.hexdigest()


def _resolve(relpaths: Any, pool: Sequence[Item], dataset_dir: str, path: Path, key: str) -> list[Item]:
    if not isinstance(relpaths, list) or not all(isinstance(r, str) for r in relpaths):
        raise _stale(path, f"{key!r} is not a list of paths")
    index: dict[str, Item] = {}
    for item in pool:
        index.setdefault(relpath_in(item.impath, dataset_dir), item)
    out, gone, unknown = [], [], []
    for rel in relpaths:
        item = index.get(rel)
        if not os.path.isfile(os.path.join(dataset_dir, rel)):
            gone.append(rel)
        elif item is None:
            unknown.append(rel)
        else:
            out.append(item)
    if gone:
        raise _stale(path, f"{len(gone)} of its {key} images no longer exist under {dataset_dir} "
                           f"(e.g. {gone[0]})")
    if unknown:
        raise _stale(path, f"{len(unknown)} of its {key} images are not in the current {key} split "
                           f"(e.g. {unknown[0]})")
    return out


def _load_legacy(pkl: str, dataset_dir: str, folder: str, with_val: bool, pool_train: Sequence[Item],
                 num_shots: int) -> tuple[list[Item], list[Item] | None]:
    log.info("Loading preprocessed few-shot data from %s", pkl)
    data = load_legacy_items(pkl, dataset_dir, folder)

    def refuse(why: str) -> DatasetError:
        return DatasetError(f"Reference few-shot pickle {pkl}: {why}. Move the file away to draw a new subset.")
    if "train" not in data:
        raise refuse("it has no 'train' list")
    train, val = data["train"], data.get("val") if with_val else None
    missing = [it.impath for it in [*train, *(val or [])] if not os.path.isfile(it.impath)]
    if missing:
        raise refuse(f"it lists {len(missing)} image(s) not found under {dataset_dir} (e.g. {missing[0]})")
    _check_counts(train, pool_train, num_shots, "train", refuse)  # val is only reported, never trained on
    return train, val


def load_or_create_fewshot(*, name: str, stem: str, folder: str, dataset_dir: str, train: Sequence[Item],
                           val: Sequence[Item] | None, num_shots: int, seed: int,
                           fewshot_dir: str | os.PathLike | None = None, legacy_pickle: str | None = None,
                           sample_val: bool = True, rng: Any = random) -> tuple[list[Item], list[Item] | None]:
    """The few-shot (train, val) for (dataset, K, seed): reference pickle, stored JSON, or a new draw.

    ``sample_val=False`` (ImageNet) samples train only and returns ``val`` unchanged.
    """
    if legacy_pickle and os.path.isfile(legacy_pickle):
        ltrain, lval = _load_legacy(legacy_pickle, dataset_dir, folder, sample_val, train, num_shots)
        return ltrain, (lval if sample_val else (list(val) if val is not None else None))

    path = fewshot_path(fewshot_dir, stem, num_shots, seed)
    if path.is_file():
        log.info("Loading preprocessed few-shot data from %s", path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise _stale(path, f"it cannot be read as JSON ({type(e).__name__}: {e})") from None
        if not isinstance(obj, dict) or "train" not in obj:
            raise _stale(path, "no 'train' list")
        want = {"dataset": name, "num_shots": num_shots, "seed": seed}
        other = {k: obj[k] for k in want if k in obj and obj[k] != want[k]}
        if other:
            raise _stale(path, f"it was drawn for {other}, not {want}")
        ftrain = _resolve(obj["train"], train, dataset_dir, path, "train")
        _check_counts(ftrain, train, num_shots, "train", lambda why: _stale(path, why))
        drawn_from = obj.get("train_pool_sha256")  # absent in files written before it was recorded
        if drawn_from is not None and drawn_from != pool_sha256(train, dataset_dir):
            raise _stale(path, f"the train split it was drawn from has changed (images added, removed, "
                               f"relabelled or reordered in {dataset_dir}'s split), so a draw now gives another subset")
        if sample_val and val is not None and obj.get("val") is not None:
            fval = _resolve(obj["val"], val, dataset_dir, path, "val")
            _check_counts(fval, val, min(num_shots, VAL_MAX_SHOTS), "val", lambda why: _stale(path, why))
        else:
            fval = list(val) if val is not None else None
        return ftrain, fval

    if seed < 0:
        log.warning("Few-shot subset drawn without a seed (SEED = %d): it is random and stored as %s",
                    seed, path.name)
    ftrain = generate_fewshot(train, num_shots, rng)
    if sample_val and val is not None:
        fval = generate_fewshot(val, min(num_shots, VAL_MAX_SHOTS), rng)
    else:
        fval = list(val) if val is not None else None
    record = {
        "format": FORMAT_VERSION, "dataset": name, "num_shots": num_shots, "seed": seed,
        "train_pool_sha256": pool_sha256(train, dataset_dir),
        "train": [relpath_in(it.impath, dataset_dir) for it in ftrain],
        "val": [relpath_in(it.impath, dataset_dir) for it in fval] if (sample_val and fval is not None) else None,
    }
    log.info("Saving preprocessed few-shot data to %s", path)
    if not atomic_write_text(path, json.dumps(record, indent=1) + "\n", overwrite=False):
        log.warning("Few-shot file %s appeared while drawing (another run); keeping the existing file", path)
    return ftrain, fval
