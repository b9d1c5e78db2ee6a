"""Registry of dataset classes, looked up by DATASET.NAME or stem.

Every module of the ``mmrl.datasets`` package is imported on the first lookup (pkgutil), so a
new dataset is one new module using :func:`register_dataset`; nothing else needs editing.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import TypeVar

from mmrl.errors import DatasetError

_BY_NAME: dict[str, type] = {}
_BY_STEM: dict[str, type] = {}
_imported = False
T = TypeVar("T", bound=type)


def register_dataset(cls: T) -> T:
    """Class decorator: register a dataset class under its NAME and STEM."""
    for attr in ("NAME", "STEM", "FOLDER"):
        if not getattr(cls, attr, ""):
            raise TypeError(f"dataset class {cls.__qualname__} must set {attr}")
    for table, key in ((_BY_NAME, cls.NAME), (_BY_STEM, cls.STEM)):
        other = table.get(key)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise TypeError(f"dataset {key!r} registered twice ({other.__module__}, {cls.__module__})")
        table[key] = cls
    return cls


def import_all() -> None:
    """Import every module of the mmrl.datasets package once (they register themselves)."""
    global _imported
    if _imported:
        return
    import mmrl.datasets as pkg
    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    _imported = True


def registered() -> dict[str, type]:
    """NAME -> class, for every registered dataset."""
    import_all()
    return dict(_BY_NAME)


def get_dataset_class(name_or_stem: str) -> type:
    import_all()
    key = str(name_or_stem).strip()
    cls = _BY_NAME.get(key) or _BY_STEM.get(key)
    if cls is not None:
        return cls
    # compare case-insensitively over names and stems; always suggest the DATASET.NAME
    lower = {stem.lower(): cls.NAME for stem, cls in _BY_STEM.items()}
    lower.update({name.lower(): name for name in _BY_NAME})
    if key.lower() in lower:
        raise DatasetError(f"Unknown dataset {key!r}; did you mean {lower[key.lower()]!r}? (names are case-sensitive)")
    close = difflib.get_close_matches(key.lower(), list(lower), n=1, cutoff=0.0)
    hint = f" Did you mean {lower[close[0]]!r}?" if close else ""
    raise DatasetError(f"Unknown dataset {key!r}.{hint} Registered: {', '.join(sorted(_BY_NAME))}.")
