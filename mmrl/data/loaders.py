"""The image dataset and the train/test DataLoaders of the protocol (docs/protocol.md#data-pipeline).

Unreadable images: by default a corrupt or truncated file raises DatasetError naming it.
With DATASET.SKIP_CORRUPT = True the sample is SUBSTITUTED by the next readable item of the
list (with a warning naming the skipped file), so batch shapes and the loader length stay
as planned; the substitute's own label, impath and index are returned, never a wrong label.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from mmrl.data.items import Item
from mmrl.errors import DatasetError

log = logging.getLogger("mmrl.data")


def read_image(path: str) -> Image.Image:
    """Decode fully and convert to RGB (palette, greyscale, CMYK, RGBA -> 3 channels)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"Image not found: {path}. Re-extract the dataset or check DATASET.ROOT.") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL raises these for corrupt/truncated data
        raise DatasetError(f"Cannot decode image {path} ({e}). Replace the file, or set "
                           "DATASET.SKIP_CORRUPT True to skip unreadable images.") from e


class ImageDataset(Dataset):
    """Items -> ``{"img", "label", "domain", "impath", "index"}`` dicts."""

    def __init__(self, items: Sequence[Item], transform: Callable | None = None, *, skip_corrupt: bool = False):
        self.items = list(items)
        self.transform = transform
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return len(self.items)

    def _sample(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        img = read_image(item.impath)
        if self.transform is not None:
            img = self.transform(img)
        return {"img": img, "label": item.label, "domain": item.domain, "impath": item.impath, "index": index}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not self.skip_corrupt:
            return self._sample(index)
        n = len(self.items)
        for step in range(n):
            j = (index + step) % n
            try:
                return self._sample(j)
            except DatasetError as e:
                log.warning("Skipping unreadable image (DATASET.SKIP_CORRUPT): %s", e)
        raise DatasetError(f"No readable image among the {n} items of this split (first: {self.items[0].impath}).")


def _loader(cfg, items: Sequence[Item], transform, sampler_cls, batch_size: int, drop_last: bool,
            num_workers: int | None, what: str) -> DataLoader:
    if not items:
        raise DatasetError(f"The {what} list is empty: no loader can be built. Check the dataset split.")
    dataset = ImageDataset(items, transform, skip_corrupt=bool(cfg.DATASET.SKIP_CORRUPT))
    workers = cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler_cls(dataset), num_workers=workers,
                        drop_last=drop_last, pin_memory=bool(torch.cuda.is_available() and cfg.USE_CUDA))
    assert len(loader) > 0
    return loader


def build_train_loader(cfg, items: Sequence[Item], transform, *, num_workers: int | None = None) -> DataLoader:
    """RandomSampler, TRAIN_X.BATCH_SIZE, drop_last only when there is at least one full batch."""
    bs = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    return _loader(cfg, items, transform, RandomSampler, bs, len(items) >= bs, num_workers, "train_x")


def build_test_loader(cfg, items: Sequence[Item], transform, *, num_workers: int | None = None) -> DataLoader:
    """Sequential, TEST.BATCH_SIZE, every item kept."""
    return _loader(cfg, items, transform, SequentialSampler, cfg.DATALOADER.TEST.BATCH_SIZE, False,
                   num_workers, "test")
