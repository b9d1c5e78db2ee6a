"""The one way this package reads a torch file it did not just write (checkpoints, resume
files, CLIP and demo weights): tensors and plain containers only, errors that name the file.

``torch.load(weights_only=True)`` never runs code from the file, but its error text advises
retrying with ``weights_only=False``, which would. That text is never shown: the message
says what the file holds and how to fix it instead.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from mmrl.errors import MMRLError


def _why_refused(e: Exception) -> str:
    """What torch's safe loader objected to, without its advice to load unsafely."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    if found:
        return (f"was not loaded: it refers to the Python object {found.group(1)}, which a weights file never "
                f"needs (loading it could run code from the file)")
    return "is corrupt or truncated (not a torch weights file)"


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if "weights_only" not in text else type(e).__name__


def load_torch_file(path: str | os.PathLike, what: str, fix: str, *, error: type[MMRLError],
                    pickle_module: Any = None) -> Any:
    """The object in ``path`` (tensors, dicts, lists, numbers, strings).

    ``what`` names the file's role in messages ("checkpoint", "resume file", ...), ``fix`` says
    what to do about a bad one, ``error`` is the error type raised. ``pickle_module``: a
    restricted unpickler tried when the safe loader refuses (the authors' Dassl checkpoints
    pickle a scheduler object); it must itself refuse anything that could run code.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} not found. {fix}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = e
    except Exception as e:  # truncated zip, I/O error, ...: torch raises many kinds
        raise error(f"{what} {path} is corrupt or truncated ({_short(e)}). {fix}") from None
    if pickle_module is not None:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=pickle_module)
        except Exception as e:
            raise error(f"{what} {path} was not loaded: {_short(e)}. {fix}") from None
    raise error(f"{what} {path} {_why_refused(refused)}. {fix}") from None
