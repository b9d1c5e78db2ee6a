"""Read the reference code's pickles (few-shot caches, ImageNet's preprocessed.pkl) safely.

Those files hold Dassl ``Datum`` objects. Unpickling can run arbitrary code, so the unpickler
here resolves only that one class (to a plain shim) and refuses every other global.
"""
from __future__ import annotations

import copyreg
import os
import pickle
from typing import Any

from mmrl.data.items import Item
from mmrl.errors import DatasetError

DATUM_GLOBAL = ("dassl.data.datasets.base_dataset", "Datum")


class LegacyDatum:
    """Stand-in for Dassl's Datum: the unpickler fills ``_impath``, ``_label``, ... into it."""

    def to_item(self) -> Item:
        d = self.__dict__
        return Item(impath=str(d["_impath"]), label=int(d["_label"]),
                    classname=str(d.get("_classname", "")), domain=int(d.get("_domain", 0)))


# Old pickle protocols rebuild plain objects through copyreg._reconstructor(cls, object, None);
# with classes limited to the shim and ``object`` that cannot call anything else.
_ALLOWED: dict[tuple[str, str], Any] = {
    DATUM_GLOBAL: LegacyDatum,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("builtins", "object"): object,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,   # protocols 0/1 keep the Python 2 names
    ("__builtin__", "object"): object,
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def load_legacy_pickle(path: str | os.PathLike) -> Any:
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as e:
        raise DatasetError(f"Cannot read reference pickle {path}: {e}. Only Dassl Datum lists are accepted; "
                           "delete or move the file if it is not a reference few-shot/preprocessed cache.") from e


def reroot(impath: str, dataset_dir: str, folder: str) -> str:
    """Map an absolute path recorded on another machine onto the current dataset folder.

    ``/old/data/eurosat/2750/Forest/Forest_1.jpg`` -> ``<dataset_dir>/2750/Forest/Forest_1.jpg``
    (cut after the last ``/<folder>/`` component). Paths already inside dataset_dir are kept.
    """
    dataset_dir = dataset_dir.rstrip("/")
    if impath.startswith(dataset_dir + "/"):
        return impath
    marker = f"/{folder}/"
    cut = impath.rfind(marker)
    if cut < 0:
        return impath
    return os.path.join(dataset_dir, impath[cut + len(marker):])


def load_legacy_items(path: str | os.PathLike, dataset_dir: str, folder: str) -> dict[str, list[Item]]:
    """``{"train": [Item...], "val": [...], ...}`` from a reference pickle, paths re-rooted."""
    obj = load_legacy_pickle(path)
    if not isinstance(obj, dict):
        raise DatasetError(f"Reference pickle {path} holds {type(obj).__name__}, expected a dict of item lists.")
    out: dict[str, list[Item]] = {}
    for key, seq in obj.items():
        if seq is None:
            continue
        if not isinstance(seq, list) or not all(isinstance(d, LegacyDatum) for d in seq):
            raise DatasetError(f"Reference pickle {path}: {key!r} is not a list of Dassl Datum objects.")
        items = [d.to_item() for d in seq]
        out[str(key)] = [Item(reroot(it.impath, dataset_dir, folder), it.label, it.classname, it.domain)
                         for it in items]
    return out
