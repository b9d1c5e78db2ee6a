"""Demo: the built-in synthetic benchmark (32 classes of coloured, patterned shapes).

Layout, written like a real dataset by :func:`mmrl.demo.world.ensure_demo_dataset`:
``demo/images/<colour>_<pattern>_<shape>/<n>.png`` plus ``demo/split_zhou_Demo.json``
(CoOp format; 20 train, 6 val, 50 test images per class; labels 0-15 = base, 16-31 = new).

Which folder is used (DATASET.ROOT):
* ``DATASET.ROOT`` holds ``demo/split_zhou_Demo.json``: that folder, like any dataset (a
  folder this package generated is regenerated first if it is from another world version;
  a folder without the ``WORLD_VERSION`` marker is taken as given);
* otherwise (ROOT empty, or a data root without ``demo/``): the cache folder
  ``$MMRL_CACHE/demo`` (default ``~/.cache/mmrl/demo``), generated on first use (~10 s).
The data root is never written to unless it already holds a generated ``demo/`` folder.
"""
from __future__ import annotations

import os

from mmrl.datasets.base import JsonSplitDataset
from mmrl.datasets.registry import register_dataset
from mmrl.demo import world


@register_dataset
class Demo(JsonSplitDataset):
    NAME, STEM, FOLDER = world.DATASET_NAME, "demo", world.FOLDER
    IMAGE_SUBDIR = "images"
    TEMPLATE = world.TEMPLATE

    def resolve(self) -> str:
        """Point ``root``/``dataset_dir`` at the folder to use (generating it if needed)."""
        here = self.dataset_dir
        if self.root_arg and os.path.isfile(os.path.join(here, world.SPLIT_FILE)):
            if os.path.isfile(os.path.join(here, "WORLD_VERSION")):
                here = str(world.ensure_demo_dataset(self.root))
        else:
            here = str(world.ensure_demo_dataset())
        self.dataset_dir = here
        self.root = os.path.dirname(here)
        return here

    def prepare_hint(self) -> str:
        return "`python -c 'from mmrl.demo.world import ensure_demo_dataset; ensure_demo_dataset()'`"

    def load(self):
        self.resolve()
        return super().load()
