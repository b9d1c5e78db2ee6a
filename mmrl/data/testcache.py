"""Decoded test images, cached once per (split, test transform) as a uint8 memory map.

Every run that evaluates a split (three seeds, base and new heads, several checkpoints)
would otherwise decode and resize the same JPEGs again. The cache stores what the test
transform holds just before ``ToTensor``: N x 3 x H x W uint8 after resize + center crop.
``ToTensor`` and ``Normalize`` run at load time on exactly that array, so the tensors are
bit-identical to the normal path (PIL's resize output is uint8 already: nothing is lost).

Layout: ``<cache dir>/<name>/<key>.u8`` (raw array) + ``<key>.json`` (header) + ``<key>.stat.npy``
(the files' stat at build time). The key hashes the deterministic transforms (their repr,
PIL and torchvision versions), the dataset folder (resolved, so another path to the same
files shares the cache and two copies of a dataset do not) and the split's item list
(relative paths + labels, in order), so a changed split or transform gets a new file. What
the pixels are made from is checked on every use: each image's size, mtime and ctime
(nanoseconds; one stat per file, cheap on ImageNet-sized splits) must equal those recorded
in the header's digest, else the cache is rebuilt and the log says why. The files are
written to temporary names and renamed; the header goes last, so a file without a matching
header is never read. Builders of the same key serialise on a lock file; the holder deletes the
temp files of a build that was killed.

Cache dir: TEST.CACHE_DIR; "" = ``$MMRL_CACHE/testcache`` (default ``~/.cache/mmrl/testcache``);
"none" disables the cache. Short disk, an unwritable folder or a transform the cache cannot
represent (random crops) fall back to the normal loader with a logged message.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset, SequentialSampler
from torchvision import transforms as T

from mmrl.data import loaders
from mmrl.data.fileio import atomic_path, atomic_write_text, cache_root, killed_writes
from mmrl.data.items import Item

log = logging.getLogger("mmrl.data")

FORMAT = "mmrl-testcache"
VERSION = 2
MIN_FREE_BYTES = 512 * 2**20   # always leave this much disk free, plus 5% of the cache size
_DETERMINISTIC = (T.Resize, T.CenterCrop)  # the only PIL-stage transforms the cache replays


def resolve_cache_dir(value: str | os.PathLike | None) -> Path | None:
    """TEST.CACHE_DIR -> folder, or None when the cache is disabled ("none")."""
    text = os.fspath(value) if value is not None else ""
    if text.strip().lower() == "none":
        return None
    if text:
        return Path(text).expanduser()
    return cache_root() / "testcache"


def split_transform(transform: Any) -> tuple[list, list, tuple[int, int]] | None:
    """(PIL stage, tensor stage after ToTensor, (H, W)) of a test transform, or None when the
    PIL stage is not a fixed-size deterministic resize/crop the cache can store."""
    steps = list(transform.transforms) if isinstance(transform, T.Compose) else [transform]
    cut = next((i for i, t in enumerate(steps) if isinstance(t, T.ToTensor)), None)
    if cut is None or cut == 0:
        return None
    pre, post = steps[:cut], steps[cut + 1:]
    if not all(type(t) in _DETERMINISTIC for t in pre):
        return None
    last = pre[-1]
    size = getattr(last, "size", None)
    if isinstance(size, int) or size is None or len(size) != 2:
        return None  # output size would follow each image's aspect ratio
    return pre, post, (int(size[0]), int(size[1]))


def transform_key(pre: Sequence) -> str:
    """What fixes the cached pixels: the resize/crop settings and the libraries that run them."""
    return " | ".join([*(repr(t) for t in pre), f"PIL {PIL.__version__}", f"torchvision {torchvision.__version__}"])


def _relpath(impath: str, base: str) -> str:
    head = base.rstrip("/") + "/"
    return impath[len(head):] if impath.startswith(head) else os.path.relpath(impath, base)


def items_digest(items: Sequence[Item], base: str) -> str:
    """SHA-256 of the ordered (path relative to ``base``, label) list: any change to the split changes it."""
    h = hashlib.sha256()
    for it in items:
        h.update(f"{_relpath(it.impath, base)}\t{it.label}\n".encode("utf-8"))
    return h.hexdigest()


def file_stats(items: Sequence[Item]) -> np.ndarray:
    """(size, mtime_ns, ctime_ns) per item, -1s for a file that cannot be stat'ed: what
    changes when an image is rewritten, replaced or restored (mtime alone can be set back)."""
    out = np.full((len(items), 3), -1, dtype=np.int64)
    for i, it in enumerate(items):
        try:
            st = os.stat(it.impath)
        except OSError:
            continue
        out[i] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


def _stats_digest(stats: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(stats, dtype="<i8").tobytes()).hexdigest()


@dataclass
class TestCache:
    """A complete cache file and what it holds."""
    data_path: Path
    shape: tuple[int, int, int, int]                       # (N, 3, H, W)
    substitutions: dict[int, int] = field(default_factory=dict)  # slot -> item index stored there
    built: bool = False                                    # decoded in this call (else reused)


class _ToCHW:
    """PIL RGB image -> 3 x H x W uint8 array (module level so workers can pickle it)."""

    def __call__(self, img) -> np.ndarray:
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def _free_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive lock so parallel runs (e.g. three seeds) decode a split once, not three times."""
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic renames alone keep readers safe
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_header(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove_killed_builds(folder: Path, key: str) -> None:
    """Delete the temp files of a build that was killed: a test split's worth of disk each.
    Called under the key's lock, so no live build owns them."""
    for tmp in killed_writes(folder, f"{key}.*"):
        log.info("Test image cache: removing %s, left by a build that was killed", tmp)
        tmp.unlink(missing_ok=True)


def _stale_reason(header: dict | None, data_path: Path, expect: dict, stats: np.ndarray,
                  stats_path: Path) -> str | None:
    """Why the cache at ``data_path`` cannot be used (None: it can)."""
    if header is None:
        return "no cache yet" if not data_path.exists() else "its header is missing or unreadable"
    changed = [k for k, v in expect.items() if header.get(k) != v]
    if changed:
        return f"it was built with other {', '.join(changed)}"
    n, c, h, w = header["shape"]
    try:
        size = data_path.stat().st_size
    except OSError:
        return "its data file is missing"
    if size != n * c * h * w:
        return f"its data file is incomplete ({size} of {n * c * h * w} bytes)"
    if header.get("files_sha256") != _stats_digest(stats):
        try:
            old = np.load(stats_path)
            differ = int((old != stats).any(axis=1).sum()) if old.shape == stats.shape else len(stats)
        except (OSError, ValueError):
            differ = None
        count = f"{differ} of {len(stats)}" if differ is not None else "some"
        return f"images changed: {count} files differ in size or modification time since it was built"
    return None


def _decode_into(items: Sequence[Item], pre: list, shape: tuple, path: Path, *, skip_corrupt: bool,
                 num_workers: int, batch_size: int = 64) -> dict[int, int]:
    """Decode + resize + crop every item into a new uint8 file at ``path``; returns substitutions."""
    # ImageDataset does the decoding (and the SKIP_CORRUPT substitution) exactly as the normal path
    dataset = loaders.ImageDataset(items, T.Compose([*pre, _ToCHW()]), skip_corrupt=skip_corrupt)
    # its own generator: a cache build must not advance the run's global torch stream
    loader = DataLoader(dataset, batch_size=batch_size, sampler=SequentialSampler(dataset), num_workers=num_workers,
                        generator=torch.Generator())
    arr = np.memmap(path, dtype=np.uint8, mode="w+", shape=shape)
    subs: dict[int, int] = {}
    pos = 0
    for batch in loader:
        imgs = batch["img"].numpy()
        if imgs.shape[1:] != shape[1:]:
            raise ValueError(f"test transform produced {imgs.shape[1:]}, expected {shape[1:]}")
        arr[pos:pos + len(imgs)] = imgs
        for k, src in enumerate(batch["index"].tolist()):
            if src != pos + k:
                subs[pos + k] = int(src)
        pos += len(imgs)
    arr.flush()
    del arr
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
    return subs


def prepare_test_cache(items: Sequence[Item], transform: Any, cache_dir: str | os.PathLike | None, *,
                       name: str = "test", dataset_dir: str | None = None, skip_corrupt: bool = False,
                       num_workers: int = 0) -> TestCache | None:
    """The cache for this split and transform, built if needed; None = use the normal loader."""
    root = resolve_cache_dir(cache_dir)
    if root is None:
        log.info("Test image cache disabled (TEST.CACHE_DIR none)")
        return None
    if not items:
        return None  # the normal loader reports the empty split
    parts = split_transform(transform)
    if parts is None:
        log.info("Test image cache not used: the test transform is not a fixed-size resize/crop + ToTensor")
        return None
    pre, _, (h, w) = parts
    shape = (len(items), 3, h, w)
    base = dataset_dir if dataset_dir is not None else os.path.commonpath([os.path.dirname(it.impath) for it in items])
    expect = {"format": FORMAT, "version": VERSION, "transform": transform_key(pre),
              "root": os.path.realpath(base), "items_sha256": items_digest(items, base), "shape": list(shape)}
    key = hashlib.sha256(json.dumps(expect, sort_keys=True).encode()).hexdigest()[:24]
    folder = root / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    data_path, header_path, stats_path = folder / f"{key}.u8", folder / f"{key}.json", folder / f"{key}.stat.npy"
    nbytes = int(np.prod(shape))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / f"{key}.lock"):
            _remove_killed_builds(folder, key)
            header = _read_header(header_path)
            stats = file_stats(items)
            why = _stale_reason(header, data_path, expect, stats, stats_path)
            if why is None:
                subs = {int(k): int(v) for k, v in header.get("substitutions", {}).items()}
                if subs and not skip_corrupt:
                    log.info("Test image cache %s holds substituted unreadable images; DATASET.SKIP_CORRUPT "
                             "is off, so the split is read normally", data_path)
                    return None
                log.info("Test image cache: reusing %s (%d images)", data_path, len(items))
                return TestCache(data_path, shape, subs, built=False)
            free = _free_bytes(folder)
            if free < nbytes * 1.05 + MIN_FREE_BYTES:
                log.warning("Test image cache skipped: %.1f MB needed in %s but only %.1f MB free; "
                            "reading test images normally", nbytes / 2**20, folder, free / 2**20)
                return None
            log.info("Test image cache: building %s (%s)", data_path, why)
            t0 = time.time()
            header_path.unlink(missing_ok=True)  # a reader never pairs the old header with new data
            with atomic_path(data_path) as tmp:
                subs = _decode_into(items, pre, shape, tmp, skip_corrupt=skip_corrupt, num_workers=num_workers)
            with atomic_path(stats_path) as tmp_stats:
                with open(tmp_stats, "wb") as fh:
                    np.save(fh, stats)
            header = dict(expect, name=name, n_items=len(items), dtype="uint8", files_sha256=_stats_digest(stats),
                          substitutions={str(k): v for k, v in subs.items()}, created=time.time())
            atomic_write_text(header_path, json.dumps(header, indent=1))
            log.info("Test image cache: decoded %d images into %s (%.1f MB) in %.1f s", len(items), data_path,
                     nbytes / 2**20, time.time() - t0)
            return TestCache(data_path, shape, subs, built=True)
    except OSError as e:  # read-only or vanished folder: the run must not fail for a cache
        log.warning("Test image cache skipped (%s); reading test images normally", e)
        return None


class CachedTestDataset(Dataset):
    """The cached uint8 images as the same dicts as ``loaders.ImageDataset`` yields."""

    def __init__(self, cache: TestCache, items: Sequence[Item], post: Sequence):
        self.items = list(items)
        self.path = cache.data_path
        self.shape = cache.shape
        self.substitutions = dict(cache.substitutions)
        self.post = list(post)
        self._array: np.memmap | None = None
        if len(self.items) != self.shape[0]:
            raise ValueError(f"{len(self.items)} items for a cache of {self.shape[0]} images")

    def __getstate__(self):  # workers reopen the map themselves
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._array is None:
            self._array = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        # ToTensor's own arithmetic on the same uint8 values: bit-identical to the normal path
        img = torch.from_numpy(np.array(self._array[index])).to(dtype=torch.get_default_dtype()).div(255)
        for t in self.post:
            img = t(img)
        src = self.substitutions.get(index, index)
        item = self.items[src]
        return {"img": img, "label": item.label, "domain": item.domain, "impath": item.impath, "index": src}


def build_cached_test_loader(cfg, items: Sequence[Item], transform, *, name: str = "test",
                             dataset_dir: str | None = None, num_workers: int | None = None) -> DataLoader:
    """Drop-in for ``loaders.build_test_loader``: same batches, images read from the cache.

    ``name`` groups cache files by dataset (e.g. "EuroSAT"); ``dataset_dir`` makes the key
    use paths relative to it. Falls back to the normal loader whenever the cache is unusable.
    """
    workers = cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers
    cache = prepare_test_cache(items, transform, cfg.TEST.CACHE_DIR, name=name, dataset_dir=dataset_dir,
                               skip_corrupt=bool(cfg.DATASET.SKIP_CORRUPT), num_workers=workers)
    if cache is None:
        return loaders.build_test_loader(cfg, items, transform, num_workers=num_workers)
    _, post, _ = split_transform(transform)
    dataset = CachedTestDataset(cache, items, post)
    return DataLoader(dataset, batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, sampler=SequentialSampler(dataset),
                      num_workers=workers, drop_last=False,
                      pin_memory=bool(torch.cuda.is_available() and cfg.USE_CUDA))
