"""Demo: the built-in synthetic benchmark (32 classes of coloured, patterned shapes).

Layout, written like a real dataset by :func:`mmrl.demo.world.ensure_demo_dataset`:
``demo/images/<colour>_<pattern>_<shape>/<n>.png`` plus ``demo/split_zhou_Demo.json``
(CoOp format; 20 train, 6 val, 50 test images per class; labels 0-15 = base, 16-31 = new).

Which folder is used (DATASET.ROOT):
* ROOT empty (no ``--root``): the cache folder ``$MMRL_CACHE/demo`` (default
  ``~/.cache/mmrl/demo``), generated on first use (~10 s); the log says so;
* otherwise ROOT must hold ``demo/split_zhou_Demo.json``, like any dataset (a folder this
  package generated is regenerated first if it is from another world version; a folder
  without the ``WORLD_VERSION`` marker is taken as given). A ROOT without it is an error,
  never a silent switch to the cache folder.
The data root is never written to unless it already holds a generated ``demo/`` folder.
"""
from __future__ import annotations

import logging
import os

from mmrl.datasets.base import JsonSplitDataset
from mmrl.demo import world
from mmrl.errors import DatasetError

log = logging.getLogger("mmrl.data")


class Demo(JsonSplitDataset):

    def resolve(self) -> str:
        """Point ``root``/``dataset_dir`` at the folder to use (generating it if needed)."""
        here = self.dataset_dir
        if not self.root_arg:
            here = str(world.ensure_demo_dataset())
            log.info("Demo: no DATASET.ROOT given, using the built-in demo dataset at %s", here)
        elif not os.path.isfile(os.path.join(here, world.SPLIT_FILE)):
            raise DatasetError(
                f"Demo: {os.path.join(here, world.SPLIT_FILE)} not found (DATASET.ROOT = {self.root_arg!r}). "
                f"Leave --root out to use the built-in demo dataset (generated under $MMRL_CACHE/demo), or "
                f"point --root at a folder that holds '{self.FOLDER}/'.")
        elif os.path.isfile(os.path.join(here, "WORLD_VERSION")):
            here = str(world.ensure_demo_dataset(self.root))
        self.dataset_dir = here
        self.root = self.root_arg = os.path.dirname(here)
        return here

    def prepare_hint(self) -> str:
        return "`python -c 'from mmrl.demo.world import ensure_demo_dataset; ensure_demo_dataset()'`"

    def load(self):
        self.resolve()
        return super().load()
