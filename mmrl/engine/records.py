"""record.json: the truth about one run (status, resolved config, environment, metrics).

Schema (version 1):
    {
      "schema": 1,
      "status": "running" | "complete" | "failed",
      "error": null | "<message>",            # set when failed
      "mode": "train" | "eval",
      "trainer": "MMRL", "dataset": "EuroSAT", "task": "B2N", "seed": 1, "shots": 16,
      "subsample": "base", "output_dir": "<abs path>",
      "argv": [...train.py arguments...],
      "config": {...nested resolved config...},
      "config_hash": "<16 hex>",              # mmrl.config.config_hash(cfg, run_identity(args))
      "identity": {"eval_only": ..., "load_epoch": ...},   # run_identity(args), hashed with the config
      "model_dir": "<abs>" | null,            # eval: where the weights came from
      "checkpoint": {"path": ..., "sha256": ...} | null,   # eval: the file that was loaded
      "unfinished_training": {...} | absent,  # eval with --allow-unfinished: the training's status
      "code_version": "...", "env": {...}, "precision": {"requested": "amp", "used": "fp32"},
      "timings": {"started": iso, "finished": iso, "train_s": float, "eval_s": float},
      "params": {"trainable": int, "total": int},
      "metrics": {"accuracy": float, "error": float, "macro_f1": float, "total": int, "correct": int},
      "history": [...previous records of this dir that were superseded...]   # optional
    }
Writes are atomic (temp file + rename), so a reader never sees half a record.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mmrl.config import RunArgs, config_hash, resolve_config
from mmrl.data.fileio import atomic_write_text
from mmrl.errors import RecordError

RECORD_NAME = "record.json"
SCHEMA = 1


def write_record(output_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    atomic_write_text(Path(output_dir) / RECORD_NAME, json.dumps(record, indent=2, default=str) + "\n")


def read_record(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's record; None when there is none. One that exists but cannot be read is an
    error: treating it as absent would rerun a finished run or read results from elsewhere."""
    p = Path(output_dir) / RECORD_NAME
    if not p.exists():
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise RecordError(f"{p} exists but cannot be read ({type(e).__name__}: {e}). "
                          f"{corrupt_record_hint(p)}") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("status"), str):
        raise RecordError(f"{p} is not a run record (no 'status'). {corrupt_record_hint(p)}")
    if not isinstance(rec.get("schema", SCHEMA), int) or rec.get("schema", SCHEMA) > SCHEMA:
        raise RecordError(f"{p} has record schema {rec.get('schema')!r}; this version of the harness reads schema "
                          f"{SCHEMA} and older. Use the version that wrote it, or move the run aside.")
    return rec


def corrupt_record_hint(path: Path) -> str:
    return (f"Nothing was read from that run. Move it aside to start that run over "
            f"(`mv {path.parent} {path.parent}.broken`), or restore the file.")


def run_identity(args: RunArgs) -> dict[str, Any]:
    """The parts of a run's identity that are not config keys."""
    ident = {"eval_only": bool(args.eval_only), "load_epoch": args.load_epoch}
    # only when set, so that records made without them keep their hash
    if args.allow_unfinished:
        ident["allow_unfinished"] = True
    if args.no_train:  # a built-but-untrained run is not the trained one
        ident["no_train"] = True
    return ident


def expected_hash(args: RunArgs) -> str:
    """The config hash a run with these arguments would record (what `sweep` compares)."""
    rc = resolve_config(args)
    return config_hash(rc.cfg, run_identity(args))

