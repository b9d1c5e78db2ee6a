"""Keeping work that is not part of the protocol off the global random streams."""
from __future__ import annotations

import contextlib
import os
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


DETERMINISTIC_ENV = "MMRL_DETERMINISTIC"


def deterministic_requested() -> bool:
    """MMRL_DETERMINISTIC=1: trade CUDA speed for run-to-run identical GPU arithmetic."""
    return os.environ.get(DETERMINISTIC_ENV, "").strip() not in ("", "0")


def configure_cuda(deterministic: bool) -> None:
    """cuDNN autotuning (the default) may choose other kernels, with other float rounding, in
    each run. Deterministic mode turns it off and asks torch and cuBLAS for deterministic
    kernels; ops that have none only warn, so a run never fails for it."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
