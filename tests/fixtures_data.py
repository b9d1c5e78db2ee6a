"""Shared helpers for the data/dataset tests (imported, not a conftest)."""
from __future__ import annotations

import pickle
import sys
import types
from contextlib import contextmanager
from pathlib import Path

from mmrl.config import get_default_config
from mmrl.data.items import Item


def items(prefix: str, label: int, n: int, name: str | None = None, root: str = "/d") -> list[Item]:
    """``n`` items ``<root>/<prefix>_00 ..`` with one label."""
    return [Item(f"{root}/{prefix}_{i:02d}", label, name or f"class{label}") for i in range(n)]


def stems(lst) -> list[str]:
    return [Path(it.impath).name for it in lst]


def mmrl_cfg(**input_overrides):
    """Default config with the MMRL YAML's INPUT/DATALOADER values (vit_b16.yaml)."""
    cfg = get_default_config()
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.PIXEL_MEAN = [0.48145466, 0.4578275, 0.40821073]
    cfg.INPUT.PIXEL_STD = [0.26862954, 0.26130258, 0.27577711]
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]
    cfg.INPUT.RRCROP_SCALE = (0.5, 1)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.TEST.BATCH_SIZE = 250
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.USE_CUDA = False
    for k, v in input_overrides.items():
        setattr(cfg.INPUT, k, v)
    return cfg


@contextmanager
def fake_dassl():
    """Install a stand-in ``dassl.data.datasets.base_dataset.Datum`` so tests can write pickles
    exactly like the reference code does (the class is removed again afterwards)."""
    names = ["dassl", "dassl.data", "dassl.data.datasets", "dassl.data.datasets.base_dataset"]
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}

    class Datum:
        def __init__(self, impath="", label=0, domain=0, classname=""):
            self._impath, self._label, self._domain, self._classname = impath, label, domain, classname

    Datum.__module__ = "dassl.data.datasets.base_dataset"
    Datum.__qualname__ = "Datum"
    mods["dassl.data.datasets.base_dataset"].Datum = Datum
    sys.modules.update(mods)
    try:
        yield Datum
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def write_reference_pickle(path: Path, lists: dict[str, list[Item]], protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
    """Write ``{"train": [Datum...], ...}`` as the reference's few-shot cache would."""
    with fake_dassl() as Datum:
        obj = {k: [Datum(it.impath, it.label, it.domain, it.classname) for it in v] for k, v in lists.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
