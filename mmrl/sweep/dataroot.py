"""Where the datasets are: ``--root``, else $DATA, else the embedded demo dataset."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mmrl.errors import ConfigError


@dataclass
class DataRoot:
    path: str
    demo: bool = False
    note: str = ""


def resolve_data_root(cli_root: str | None, *, allow_demo: bool = True) -> DataRoot:
    if cli_root:
        return DataRoot(str(cli_root))
    env = os.environ.get("DATA")
    if env:
        return DataRoot(env)
    how = ("pass --root /path/to/datasets or export DATA=/path/to/datasets (the folder that holds "
           "imagenet/, caltech-101/, oxford_pets/, ...; see README, 'Datasets')")
    if allow_demo:
        try:
            from mmrl.demo.world import ensure_demo_dataset
        except ImportError:
            ensure_demo_dataset = None
        if ensure_demo_dataset is not None:
            folder = Path(ensure_demo_dataset())
            # it returns <root>/demo, the dataset's folder; DATASET.ROOT is the folder above it
            root = folder.parent if folder.name == "demo" else folder
            return DataRoot(str(root), demo=True,
                            note=f"neither --root nor DATA is set: running the embedded demo dataset "
                                 f"(datasets = [demo], data under {root}); for the real protocol {how}")
    raise ConfigError(f"no dataset root: {how}")
