"""One run = one train.py invocation (protocol.md §1), writing log.txt, record.json and a checkpoint.

A run directory whose record says "complete" with the same config hash is never redone;
one that is complete with another config is refused (move it aside); anything else
(failed, killed, partial) resumes from its last epoch.
"""
from __future__ import annotations

import datetime
import fcntl
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from mmrl import __version__
from mmrl.config import RunArgs, config_hash, config_to_dict, dump_config_text, resolve_config
from mmrl.engine.args import parse_run_args
from mmrl.engine.records import SCHEMA, read_record, run_identity, write_record
from mmrl.engine.runlog import log_path_for, run_logging
from mmrl.errors import MMRLError, RunError

log = logging.getLogger("mmrl.engine")


def code_version() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", ""
    return f"{__version__}+{sha}{'.dirty' if dirty else ''}" if sha else __version__


def environment() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    import PIL
    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cuda_available": cuda,
            "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "pillow": PIL.__version__, "threads": torch.get_num_threads()}


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class _RunLock:
    """An exclusive lock per run directory, so two processes never run the same run."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / ".run.lock"
        self.fh = open(self.path, "w")

    def __enter__(self):
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise RunError(f"another process is running {self.path.parent} right now") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _print_header(args: RunArgs, argv: list[str], cfg) -> None:
    log.info("***************\n** Arguments **\n***************")
    fields = {"root": args.root, "output_dir": args.output_dir, "resume": args.resume, "seed": args.seed,
              "source_domains": args.source_domains, "target_domains": args.target_domains,
              "transforms": args.transforms, "trainer": args.trainer, "backbone": args.backbone, "head": args.head,
              "config_file": args.config_file, "dataset_config_file": args.dataset_config_file,
              "eval_only": args.eval_only, "model_dir": args.model_dir, "load_epoch": args.load_epoch,
              "no_train": args.no_train, "opts": args.opts}
    for k in sorted(fields):
        log.info("%s: %s", k, fields[k])
    log.info("************\n** Config **\n************")
    log.info(dump_config_text(cfg))
    log.info("Collecting env info ...")
    log.info("** System info **")
    for k, v in environment().items():
        log.info("%s: %s", k, v)
    log.info("")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_run_args(argv)
        resolved = resolve_config(args)
    except MMRLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = resolved.cfg
    out = Path(cfg.OUTPUT_DIR).expanduser().resolve()
    identity = run_identity(args)
    chash = config_hash(cfg, identity)

    previous = read_record(out)
    if previous and previous.get("status") == "complete":
        if previous.get("config_hash") == chash:
            print(f"Run already complete at {out} (record.json, config {chash}); nothing to do.")
            return 0
        print(f"error: {out} holds a complete run with another config (hash {previous.get('config_hash')} vs "
              f"{chash}). It is not overwritten: use another --output-dir, or move that directory aside "
              f"(`mmrl sweep` does this for you and keeps the old record).", file=sys.stderr)
        return 3

    try:
        lock = _RunLock(out)
        lock.__enter__()
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 4
    try:
        return _run_locked(args, argv, cfg, out, chash, previous)
    finally:
        lock.__exit__(None, None, None)


def _run_locked(args: RunArgs, argv: list[str], cfg, out: Path, chash: str, previous: dict | None) -> int:
    from mmrl.engine.trainer import Trainer, seed_everything
    record: dict[str, Any] = {
        "schema": SCHEMA, "status": "running", "error": None, "mode": "eval" if args.eval_only else "train",
        "trainer": cfg.TRAINER.NAME, "dataset": cfg.DATASET.NAME, "task": cfg.TASK, "seed": cfg.SEED,
        "shots": cfg.DATASET.NUM_SHOTS, "subsample": cfg.DATASET.SUBSAMPLE_CLASSES, "output_dir": str(out),
        "argv": argv, "config": config_to_dict(cfg), "config_hash": chash,
        "model_dir": str(Path(args.model_dir).resolve()) if args.model_dir else None, "checkpoint": None,
        "code_version": code_version(), "env": environment(), "precision": None,
        "timings": {"started": _now()}, "params": None, "metrics": None,
    }
    if previous:
        record["history"] = (previous.pop("history", []) or []) + [previous]
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")  # before the log exists, as in Dassl
        seed_everything(cfg.SEED)
    write_record(out, record)
    t0 = time.time()
    with run_logging(log_path_for(str(out))):
        try:
            _print_header(args, argv, cfg)
            trainer = Trainer(cfg, out, eval_only=args.eval_only or cfg.TRAINER.NAME == "ZeroshotCLIP",
                              model_dir=args.model_dir, load_epoch=args.load_epoch)
            record["precision"] = trainer.precision
            trainer.build_data()
            trainer.build_model()
            record["params"] = trainer.parameter_counts()
            if trainer.backbone_info is not None:
                record["backbone"] = vars(trainer.backbone_info)
            if trainer.eval_only:
                if trainer.loaded_checkpoint is not None:
                    trainer.load_for_eval()
                    record["checkpoint"] = {k: trainer.loaded_checkpoint[k] for k in ("path", "sha256", "epoch")}
                metrics = trainer.test()
            elif args.no_train:
                metrics = {}
            else:
                metrics = trainer.train()
            record.update(status="complete", metrics=metrics)
        except (Exception, KeyboardInterrupt) as e:
            msg = str(e) if isinstance(e, MMRLError) else f"{type(e).__name__}: {e}"
            log.error("run failed: %s", msg)
            if not isinstance(e, MMRLError):
                log.debug(traceback.format_exc())
                with open(log_path_for(str(out)), "a") as f:
                    f.write(traceback.format_exc())
            record.update(status="failed", error=msg)
            code = 130 if isinstance(e, KeyboardInterrupt) else 1
        else:
            code = 0
        finally:
            record["timings"].update(finished=_now(), wall_s=round(time.time() - t0, 3),
                                     **{k: round(v, 3) for k, v in getattr(locals().get("trainer"), "timings", {}).items()})
            write_record(out, record)
    if code:
        print(f"error: run failed: {record['error']} (see {log_path_for(str(out))})", file=sys.stderr)
    return code
