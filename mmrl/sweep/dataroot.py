"""Where the datasets are: ``--root``, else $DATA, else the embedded demo dataset."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mmrl.demo import world


@dataclass
class DataRoot:
    path: str
    demo: bool = False
    note: str = ""


def resolve_data_root(cli_root: str | None) -> DataRoot:
    if cli_root:
        return DataRoot(str(cli_root))
    env = os.environ.get("DATA")
    if env:
        return DataRoot(env)
    how = ("pass --root /path/to/datasets or export DATA=/path/to/datasets (the folder that holds "
           "imagenet/, caltech-101/, oxford_pets/, ...; see README, 'Datasets')")
    folder = Path(world.ensure_demo_dataset())
    # it returns <root>/demo, the dataset's folder; DATASET.ROOT is the folder above it
    root = folder.parent if folder.name == "demo" else folder
    return DataRoot(str(root), demo=True,
                    note=f"neither --root nor DATA is set: running the embedded demo dataset "
                         f"(datasets = [demo], data under {root}); for the real protocol {how}")
