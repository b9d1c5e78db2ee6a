"""Keeping work that is not part of the protocol off the global random streams."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


@contextlib.contextmanager
def isolated_rng():
    """Run a block without changing the global Python, NumPy or torch CPU random state.

    Whatever the block draws (module initialisers of a frozen model, a library seeding itself)
    is undone on exit, so a run's stream does not depend on caches or on earlier runs in the
    process. The CUDA generators are left alone: nothing here draws from them.
    """
    py, npy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
