"""The dataset registry, derived from the specs: look a dataset up by DATASET.NAME, stem, folder
or alias, and get its loader class (imported on first use: a run imports one loader module).

A new dataset is one :class:`~mmrl.datasets.spec.DatasetSpec` (in :mod:`mmrl.datasets.specs`,
or passed to :func:`register` from a plug-in, :mod:`mmrl.plugins`) plus its YAML; a loader module
only when the generic split-JSON loader does not fit.
"""
from __future__ import annotations

import difflib
import importlib

from mmrl import plugins
from mmrl.datasets.spec import DatasetSpec
from mmrl.datasets.specs import SPECS
from mmrl.errors import DatasetError

_SPECS: dict[str, DatasetSpec] = {}      # stem -> spec, in registration (= table) order
_LOADERS: dict[str, type] = {}           # stem -> loader class bound to its spec


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset; its NAME, stem and folder must not belong to another one."""
    for other in _SPECS.values():
        if other.stem != spec.stem and {other.name, other.stem} & {spec.name, spec.stem}:
            raise DatasetError(f"dataset {spec.name!r} ({spec.stem}) clashes with {other.name!r} ({other.stem}): "
                               f"give it another NAME and stem")
    _SPECS[spec.stem] = spec
    _LOADERS.pop(spec.stem, None)
    return spec


for _spec in SPECS:
    register(_spec)


def all_specs() -> list[DatasetSpec]:
    plugins.load()
    return list(_SPECS.values())


def _keys(spec: DatasetSpec) -> tuple[str, ...]:
    return (spec.name, spec.stem, spec.folder, *spec.aliases)


def get_spec(key: str, *, exact_case: bool = False) -> DatasetSpec:
    """Look up by NAME, stem, folder or alias (any case, unless ``exact_case``: DATASET.NAME is
    case-sensitive in runs); a slip suggests the closest DATASET.NAME."""
    plugins.load()
    key = str(key).strip()
    for spec in _SPECS.values():
        if key in _keys(spec):
            return spec
    lower = {k.lower(): spec for spec in _SPECS.values() for k in _keys(spec)}
    if key.lower() in lower:
        spec = lower[key.lower()]
        if not exact_case:
            return spec
        raise DatasetError(f"Unknown dataset {key!r}; did you mean {spec.name!r}? (names are case-sensitive)")
    close = difflib.get_close_matches(key.lower(), list(lower), n=1, cutoff=0.0)
    hint = f" Did you mean {lower[close[0]].name!r}?" if close else ""
    known = ", ".join(sorted(s.name for s in _SPECS.values()))
    raise DatasetError(f"Unknown dataset {key!r}.{hint} Registered: {known}.")


def registered() -> dict[str, DatasetSpec]:
    """NAME -> spec, for every registered dataset."""
    plugins.load()
    return {s.name: s for s in _SPECS.values()}


def get_dataset_class(key: str) -> type:
    """The loader class of a dataset, carrying its spec's facts as class attributes."""
    spec = get_spec(key, exact_case=True)
    if spec.stem not in _LOADERS:
        module, _, name = spec.loader.partition(":")
        base = getattr(importlib.import_module(module), name)
        facts = {"SPEC": spec, "NAME": spec.name, "STEM": spec.stem, "FOLDER": spec.folder,
                 "IMAGE_SUBDIR": spec.image_dir, "TEMPLATE": spec.template, "TEST_ONLY": spec.test_only,
                 "VAL_IS_TEST": spec.val_is_test, "PREFIX_IS_DATASET_DIR": spec.split_prefix == "",
                 "RAW_FILES": spec.raw, "EXPECTED_WNIDS": spec.class_list}
        _LOADERS[spec.stem] = type(spec.name, (base,), {"__module__": base.__module__, **facts})
    return _LOADERS[spec.stem]
