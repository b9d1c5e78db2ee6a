"""Checkpoints: ours (trainable tensors + architecture, MBs) and the authors' Dassl files.

Where they live and which one an evaluation loads: :mod:`mmrl.engine.rundir`.  Ours hold
``state_dict`` (trainable tensors only), ``epoch``, ``optimizer``, ``scheduler``
(plain numbers), ``val_result`` and ``arch`` (the settings that fix tensor shapes).
A separate ``resume.pth`` (written every epoch) also keeps RNG states so that a killed
run continues exactly where it stopped.
"""
from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from mmrl.data.fileio import atomic_path
from mmrl.engine import rundir
from mmrl.errors import CheckpointError
from mmrl.utils.torchfile import load_torch_file

log = logging.getLogger("mmrl.engine")

FORMAT = "mmrl-harness-1"


def atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(run_dir: str | os.PathLike, *, folder: str, state_dict: dict, epoch: int, arch: dict,
                    optimizer: dict | None = None, scheduler: dict | None = None) -> Path:
    path = rundir.model_folder(run_dir, folder) / f"model.pth.tar-{epoch}"
    atomic_torch_save({
        "format": FORMAT, "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "epoch": epoch, "optimizer": optimizer, "scheduler": scheduler, "val_result": None, "arch": arch,
    }, path)
    rundir.write_checkpoint_pointer(path)
    return path


# ---------------------------------------------------------------------------------------------
# Reading: ours with weights_only; the authors' with a restricted unpickler.

class _Opaque:
    """Stands in for any allowed foreign object (e.g. a pickled LR scheduler): keeps state, runs nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


# Globals a Dassl checkpoint may reference.  Torch's tensor rebuild helpers are resolved to
# the real functions; scheduler/optimizer classes become inert placeholders.
_OPAQUE_PREFIXES = ("torch.optim", "dassl.", "trainers.")


class _RestrictedUnpickler(pickle.Unpickler):
    _ALLOWED_REAL = {
        ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_tensor_v3"),
        ("torch", "Size"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
        ("torch", "device"), ("collections", "defaultdict"), ("builtins", "dict"), ("__builtin__", "dict"),
        ("builtins", "list"), ("builtins", "tuple"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED_REAL:
            return super().find_class(module, name)
        if module == "torch" and name.endswith("Storage"):
            return super().find_class(module, name)
        if module.startswith(_OPAQUE_PREFIXES) or f"{module}.{name}".startswith(_OPAQUE_PREFIXES):
            return _Opaque
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a checkpoint")


class _RestrictedPickleModule:
    Unpickler = _RestrictedUnpickler

    @staticmethod
    def load(f, **kw):
        return _RestrictedUnpickler(f, **kw).load()


def load_checkpoint_file(path: str | os.PathLike, what: str = "checkpoint",
                         fix: str = "Point --model-dir (or --load-epoch) at a checkpoint written by "
                                    "this harness or by the authors' code.") -> dict:
    """Load any checkpoint (ours, or the authors' with a pickled scheduler) without running code."""
    return load_torch_file(path, what, fix, error=CheckpointError, pickle_module=_RestrictedPickleModule)


RESUME_KEYS = ("state_dict", "optimizer", "scheduler", "scaler", "epoch", "rng", "arch")


def load_resume_file(path: Path, run_dir: str | os.PathLike) -> dict:
    """A resume file (ours only: tensors and plain values, never the restricted unpickler)."""
    fix = f"Move the run directory aside (`mv {run_dir} {run_dir}.old`) to start that run over."
    state = load_torch_file(path, "resume file", fix, error=CheckpointError)
    missing = [k for k in RESUME_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"resume file {path} is not one this harness wrote (it lacks {missing}). {fix}")
    return state


def read_for_eval(path: Path) -> tuple[dict[str, torch.Tensor], dict, int | None]:
    """(state_dict, arch, epoch) from our file or an authors' Dassl file (arch {}: the method
    reads it from the tensors)."""
    ck = load_checkpoint_file(path)
    if not isinstance(ck, dict) or "state_dict" not in ck:
        raise CheckpointError(f"{path} is not a checkpoint (no 'state_dict' key)")
    sd = ck["state_dict"]
    return sd, ck.get("arch") or {}, ck.get("epoch")
