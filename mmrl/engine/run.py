"""One run = one train.py invocation (protocol.md §1), writing log.txt, record.json and a checkpoint.

A run directory whose record says "complete" with the same config hash is never redone;
one that is complete with another config is refused (move it aside); anything else
(failed, killed, partial) resumes from its last epoch.

``main_many`` runs several evaluation-only runs of the same split and backbone (e.g. the
three seeds of a B2N cell) with one shared pass over the test images; each run still gets
its own log.txt, record.json and predictions, exactly as if run alone.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
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
from mmrl.utils.rng import deterministic_requested

log = logging.getLogger("mmrl.engine")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CHANGED, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


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
    import PIL
    cuda = torch.cuda.is_available()
    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cuda_available": cuda,
            "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "pillow": PIL.__version__, "threads": torch.get_num_threads(), "deterministic": deterministic_requested()}


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class _RunLock:
    """An exclusive lock per run directory, so two processes never run the same run."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / ".run.lock"
        self.fh = None

    def acquire(self) -> None:
        self.fh = open(self.path, "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            self.fh = None
            raise RunError(f"another process is running {self.path.parent} right now") from None

    def release(self) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


class Run:
    """One run directory: its arguments, config, record, lock and log."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.args: RunArgs = parse_run_args(argv)
        self.cfg = resolve_config(self.args).cfg
        self.out = Path(self.cfg.OUTPUT_DIR).expanduser().resolve()
        self.hash = config_hash(self.cfg, run_identity(self.args))
        self.previous = read_record(self.out)
        self.lock = _RunLock(self.out) if self.check_existing() is None else None
        self.record: dict[str, Any] = {}
        self.trainer = None

    def check_existing(self) -> int | None:
        """An exit code when the directory already holds a complete run, else None."""
        prev = self.previous
        if not prev or prev.get("status") != "complete":
            return None
        if prev.get("config_hash") == self.hash:
            print(f"Run already complete at {self.out} (record.json, config {self.hash}); nothing to do.")
            return EXIT_OK
        print(f"error: {self.out} holds a complete run with another config (hash {prev.get('config_hash')} vs "
              f"{self.hash}). It is not overwritten: use another --output-dir, or move that directory aside "
              f"(`mmrl sweep` does this for you and keeps the old record).", file=sys.stderr)
        return EXIT_CHANGED

    @property
    def log_path(self) -> Path:
        return log_path_for(str(self.out))

    def logging(self):
        return run_logging(self.log_path)

    def begin(self) -> None:
        from mmrl.engine.trainer import seed_everything
        cfg, args = self.cfg, self.args
        self.lock.acquire()
        self.record = {
            "schema": SCHEMA, "status": "running", "error": None, "mode": "eval" if args.eval_only else "train",
            "trainer": cfg.TRAINER.NAME, "dataset": cfg.DATASET.NAME, "task": cfg.TASK, "seed": cfg.SEED,
            "shots": cfg.DATASET.NUM_SHOTS, "subsample": cfg.DATASET.SUBSAMPLE_CLASSES, "output_dir": str(self.out),
            "argv": self.argv, "config": config_to_dict(cfg), "config_hash": self.hash,
            "model_dir": str(Path(args.model_dir).resolve()) if args.model_dir else None, "checkpoint": None,
            "code_version": code_version(), "env": environment(), "precision": None,
            "timings": {"started": _now()}, "params": None, "metrics": None,
        }
        if self.previous:
            prev = dict(self.previous)
            self.record["history"] = (prev.pop("history", []) or []) + [prev]
        if cfg.SEED >= 0:
            print(f"Setting fixed seed: {cfg.SEED}")  # before the log exists, as in Dassl
            seed_everything(cfg.SEED)
        write_record(self.out, self.record)
        self.t0 = time.time()

    def print_header(self) -> None:
        a = self.args
        log.info("***************\n** Arguments **\n***************")
        fields = {"root": a.root, "output_dir": a.output_dir, "resume": a.resume, "seed": a.seed,
                  "source_domains": a.source_domains, "target_domains": a.target_domains,
                  "transforms": a.transforms, "trainer": a.trainer, "backbone": a.backbone, "head": a.head,
                  "config_file": a.config_file, "dataset_config_file": a.dataset_config_file,
                  "eval_only": a.eval_only, "model_dir": a.model_dir, "load_epoch": a.load_epoch,
                  "no_train": a.no_train, "opts": a.opts}
        for k in sorted(fields):
            log.info("%s: %s", k, fields[k])
        log.info("************\n** Config **\n************")
        log.info(dump_config_text(self.cfg))
        log.info("Collecting env info ...")
        log.info("** System info **")
        for k, v in environment().items():
            log.info("%s: %s", k, v)
        log.info("")

    def build(self) -> None:
        """Header, data, model and (eval) weights: everything before training or testing."""
        from mmrl.engine.trainer import Trainer
        self.print_header()
        eval_only = self.args.eval_only or self.cfg.TRAINER.NAME == "ZeroshotCLIP"
        self.trainer = t = Trainer(self.cfg, self.out, eval_only=eval_only, model_dir=self.args.model_dir,
                                   load_epoch=self.args.load_epoch)
        self.record["precision"] = t.precision
        t.build_data()
        t.build_model()
        self.record["params"] = t.parameter_counts()
        if t.backbone_info is not None:
            self.record["backbone"] = vars(t.backbone_info)
        if t.eval_only and t.loaded_checkpoint is not None:
            t.load_for_eval()
            self.record["checkpoint"] = {k: t.loaded_checkpoint[k] for k in ("path", "sha256", "epoch")}

    def execute(self) -> dict:
        t = self.trainer
        if t.eval_only:
            return t.test()
        if self.args.no_train:
            return {}
        return t.train()

    def fail(self, e: BaseException) -> int:
        msg = str(e) if isinstance(e, MMRLError) else f"{type(e).__name__}: {e}"
        log.error("run failed: %s", msg)
        if not isinstance(e, MMRLError):
            with open(self.log_path, "a") as f:
                f.write(traceback.format_exc())
        self.record.update(status="failed", error=msg)
        return EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else EXIT_FAILED

    def complete(self, metrics: dict) -> int:
        self.record.update(status="complete", metrics=metrics)
        return EXIT_OK

    def finish(self, code: int) -> int:
        timings = getattr(self.trainer, "timings", {}) if self.trainer is not None else {}
        step = getattr(self.trainer, "step", None)
        if step is not None:
            self.record["train_step"] = step.report()
        self.record["timings"].update(finished=_now(), wall_s=round(time.time() - self.t0, 3),
                                      **{k: round(v, 3) for k, v in timings.items()})
        write_record(self.out, self.record)
        self.lock.release()
        if code:
            print(f"error: run failed: {self.record['error']} (see {self.log_path})", file=sys.stderr)
        return code


def _open(argv: list[str]) -> tuple[Run | None, int | None]:
    """A Run ready to begin, or the exit code that ends it before it starts."""
    try:
        run = Run(argv)
    except MMRLError as e:
        print(f"error: {e}", file=sys.stderr)
        return None, EXIT_USAGE
    done = run.check_existing()
    if done is not None:
        return None, done
    try:
        run.begin()
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return None, EXIT_LOCKED
    return run, None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run, code = _open(argv)
    if run is None:
        return code
    with run.logging():
        try:
            run.build()
            code = run.complete(run.execute())
        except (Exception, KeyboardInterrupt) as e:
            code = run.fail(e)
    return run.finish(code)


def main_many(argvs: list[list[str]]) -> list[int]:
    """Several eval-only runs; those that share split, transform and backbone share one test pass."""
    from mmrl.engine.multi_eval import evaluate_together
    codes: list[int | None] = [None] * len(argvs)
    ready: list[tuple[int, Run]] = []
    for i, argv in enumerate(argvs):
        if "--eval-only" not in argv:
            codes[i] = main(argv)
            continue
        run, code = _open(argv)
        if run is None:
            codes[i] = code
            continue
        with run.logging():
            try:
                run.build()
                ready.append((i, run))
                continue
            except (Exception, KeyboardInterrupt) as e:
                code = run.fail(e)
        codes[i] = run.finish(code)

    for group in _shareable_groups([r for _, r in ready]):
        trainers = [r.trainer for r in group]
        t0 = time.time()
        try:
            with contextlib.ExitStack():
                outputs = evaluate_together([t.model for t in trainers], trainers[0].test_loader,
                                            [t.head for t in trainers], trainers[0].device,
                                            trainers[0].precision["test_used"],
                                            save_logits=any(bool(t.cfg.TEST.SAVE_LOGITS) for t in trainers))
        except (Exception, KeyboardInterrupt) as e:
            outputs = [e] * len(group)
        share = (time.time() - t0) / len(group)
        for run, out in zip(group, outputs):
            with run.logging():
                if isinstance(out, BaseException):
                    code = run.fail(out)
                else:
                    try:
                        log.info("Evaluate on the *test* set")
                        metrics = run.trainer.finish_test(out)
                        run.trainer.timings["eval_s"] = share
                        code = run.complete(metrics)
                    except (Exception, KeyboardInterrupt) as e:
                        code = run.fail(e)
            codes[[j for j, r in ready if r is run][0]] = run.finish(code)
    return [int(c) for c in codes]


def _shareable_groups(runs: list[Run]) -> list[list[Run]]:
    """Runs evaluating the same images with the same transform and backbone."""
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        t = r.trainer
        spec = getattr(t.model, "spec", None)
        key = (tuple(it.impath for it in t.data.test), tuple(r.cfg.INPUT.SIZE), r.cfg.INPUT.INTERPOLATION,
               tuple(r.cfg.INPUT.PIXEL_MEAN), tuple(r.cfg.INPUT.PIXEL_STD), t.precision["test_used"],
               getattr(spec, "backbone", r.cfg.MODEL.BACKBONE.NAME), getattr(t.model, "J", None),
               type(t.model).__name__)
        groups.setdefault(key, []).append(r)
    return list(groups.values())
