"""Plug-ins: modules outside this package that register methods (:func:`mmrl.trainers.register`)
or datasets (:func:`mmrl.datasets.register`) when imported.

They are imported on the first registry lookup of every process (train.py, each sweep job, the
tables), so a sweep's jobs see what the sweep sees: the modules named in ``$MMRL_PLUGINS``
(comma-separated import paths) and those that installed distributions declare in the entry-point
group ``mmrl.plugins``. A plug-in that fails to import is a ConfigError naming it and the fix.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback

from mmrl.errors import ConfigError, MMRLError

ENV = "MMRL_PLUGINS"
GROUP = "mmrl.plugins"

_started = False


def _named() -> list[tuple[str, str]]:
    """(import path, where it was named), the variable's first."""
    found = [(m.strip(), f"${ENV}") for m in os.environ.get(ENV, "").split(",") if m.strip()]
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        found.append((ep.value.partition(":")[0].strip(), f"entry point {ep.name!r} of {dist}"))
    return list(dict.fromkeys(found))


def load() -> None:
    """Import every plug-in once per process (re-entrant: a plug-in's own register call lands here)."""
    global _started
    if _started:
        return
    _started = True
    for module, where in _named():
        fix = (f"remove it from ${ENV}" if where.startswith("$") else "uninstall that distribution")
        try:
            importlib.import_module(module)
        except ImportError as e:
            if e.name == module:
                raise ConfigError(f"plug-in {module!r} ({where}) cannot be imported; fix the name or put its "
                                  f"folder on PYTHONPATH") from None
            raise ConfigError(f"plug-in {module!r} ({where}) failed to import: {e}{_at(e)}; install what it "
                              f"needs or {fix}") from None
        except MMRLError as e:
            raise ConfigError(f"plug-in {module!r} ({where}): {e}") from None
        except Exception as e:  # noqa: BLE001 -- any bug in user code is reported by name
            raise ConfigError(f"plug-in {module!r} ({where}) failed to import: {type(e).__name__}: {e}{_at(e)}; "
                              f"fix it or {fix}") from None


def _at(e: BaseException) -> str:
    """Where in the plug-in's own code it failed (its last frame outside the import machinery)."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith("<frozen")]
    return f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
