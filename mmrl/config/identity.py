"""What identifies a run's config: the keys the config hash covers, the hash, and the keys that
differ between two recorded configs."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from yacs.config import CfgNode as CN

from mmrl.config.views import _flatten_plain, flatten
from mmrl.trainers import registry

# Keys that say where things are or how chatty a run is, not what it computes: left out of
# the config hash so that moving the data root or the output tree keeps runs "complete".
NON_IDENTITY_KEYS = (
    "OUTPUT_DIR", "RESUME", "DATASET.ROOT", "DATASET.FEWSHOT_DIR", "DATALOADER.NUM_WORKERS",
    "VERBOSE", "TRAIN.PRINT_FREQ", "MODEL.BACKBONE.CACHE_DIR", "USE_CUDA", "TEST.SAVE_LOGITS",
    "TEST.CACHE_DIR", "TRAIN.CUDA_GRAPH",
)


def _other_blocks(flat: dict[str, Any]) -> set[str]:
    """The keys of other methods' blocks, which do not change what this run computes (the blocks
    of the methods flagged ``block_in_every_hash`` excepted: runs recorded before methods were
    plug-ins hashed them, and keep their hash)."""
    name = flat.get("TRAINER.NAME") or ""
    own = set(registry.get(name).config_blocks()) if name in registry.names() else {name}
    skip = {f"TRAINER.{key}." for m in registry.methods() if not m.block_in_every_hash
            for key in m.config_blocks() if key not in own}
    return {k for k in flat if any(k.startswith(p) for p in skip)}


def identity(flat: dict[str, Any]) -> dict[str, Any]:
    """The flat config keys the config hash covers."""
    drop = set(NON_IDENTITY_KEYS) | _other_blocks(flat)
    return {k: v for k, v in flat.items() if k not in drop}


def config_hash(cfg: CN, run: dict[str, Any] | None = None) -> str:
    """A short stable hash of what a run computes (not of where it reads and writes)."""
    flat = identity(flatten(cfg))
    flat = {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}
    payload = {"config": flat, "run": run or {}}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def changed_keys(recorded: dict[str, Any], cfg: CN | dict[str, Any], ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """(key, recorded value, value now) for each key the config hash covers that differs
    between a recorded config (``config_to_dict`` form) and ``cfg`` (a config or another record's)."""
    def norm(v: Any) -> str:
        return json.dumps(list(v) if isinstance(v, tuple) else v, sort_keys=True, default=str)
    old = identity(_flatten_plain(recorded))
    new = identity(flatten(cfg) if isinstance(cfg, CN) else _flatten_plain(cfg))
    keys = sorted((set(old) | set(new)) - set(ignore))
    missing = "<absent>"
    return [(k, old.get(k, missing), new.get(k, missing)) for k in keys
            if k not in old or k not in new or norm(old[k]) != norm(new[k])]
