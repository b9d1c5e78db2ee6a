"""The registered methods, by name.

The built-in methods are the modules listed in BUILTIN; more come from plug-ins
(:mod:`mmrl.plugins`: modules calling :func:`register`), imported after them.
"""
from __future__ import annotations

import difflib
import importlib

from mmrl import plugins
from mmrl.errors import ConfigError
from mmrl.trainers.base import Method

# In the order of the paper tables' rows.
BUILTIN = ("mmrl.trainers.zeroshot_clip", "mmrl.trainers.coop", "mmrl.trainers.cocoop", "mmrl.trainers.kgcoop",
           "mmrl.trainers.ivlp", "mmrl.trainers.maple", "mmrl.trainers.promptsrc",
           "mmrl.trainers.mmrl", "mmrl.trainers.mmrlpp")

_methods: dict[str, Method] = {}
_loaded = False


def register(method: Method) -> Method:
    """Add ``method`` (an instance) after the built-ins; a second method of the same name is refused."""
    if not _loaded and type(method).__module__ not in BUILTIN:
        _load()
    have = _methods.get(method.name)
    if have is not None and type(have) is not type(method):
        raise ConfigError(f"a method named {method.name!r} is already registered ({type(have).__module__}); "
                          f"choose another name")
    _check(method)
    method.display = method.display or method.name
    method.published_key = method.published_key or method.display
    _methods[method.name] = method
    return method


def _check(method: Method) -> None:
    """Refuse a method that a run would fail on later (a plug-in's slip, named with the fix)."""
    who = f"{type(method).__name__} ({type(method).__module__})"
    if not method.name or not method.model_folder and method.trains:
        raise ConfigError(f"{who}: a method needs a name and, if it trains, a model_folder")
    for attr in ("build", "build_for_eval") if method.trains else ("build",):
        if getattr(type(method), attr) is getattr(Method, attr):
            raise ConfigError(f"{who}: define {attr}() (docs/architecture.md#methods)")
    if method.trains and type(method).precision is Method.precision \
            and "PREC" not in method.config_blocks().get(method.block_key, {}):
        raise ConfigError(f"{who}: its config block TRAINER.{method.block_key} needs a PREC key (its training "
                          f"arithmetic, e.g. \"fp32\"), or define precision(cfg)")


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN:
        importlib.import_module(module)
    plugins.load()


def methods() -> list[Method]:
    """The built-ins in BUILTIN's order (whichever module was imported first), then the plug-ins
    in registration order."""
    _load()
    rank = {module: i for i, module in enumerate(BUILTIN)}
    return sorted(_methods.values(), key=lambda m: rank.get(type(m).__module__, len(BUILTIN)))


def names() -> list[str]:
    return [m.name for m in methods()]


def get(name: str) -> Method:
    _load()
    if name not in _methods:
        close = difflib.get_close_matches(name, list(_methods), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ConfigError(f"--trainer {name!r} is not known; choose one of {', '.join(_methods)}.{hint}")
    return _methods[name]


def default_sweep_trainers() -> tuple[str, ...]:
    return tuple(m.name for m in methods() if m.in_sweep_by_default)


def order(trainers) -> list[str]:
    """Registration order (the built-ins first), unknown names last by name."""
    pref = {n: i for i, n in enumerate(names())}
    return sorted(trainers, key=lambda t: (pref.get(t, len(pref)), t))


def model_folders() -> list[str]:
    return list(dict.fromkeys(m.model_folder for m in methods() if m.model_folder))


def trains(name: str) -> bool:
    """Whether ``name`` trains (an unregistered name found on disk is taken to)."""
    return name not in names() or get(name).trains
