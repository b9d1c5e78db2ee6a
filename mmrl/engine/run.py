"""One run = one train.py invocation (docs/protocol.md#one-run), writing log.txt, record.json and a checkpoint.

A run directory belongs to one config (its hash). Complete with the same hash: never redone.
Failed or killed with the same hash: resumed from its last epoch. Any other config, or
training state without a record, is refused with the changed keys listed (move it aside);
only a failed run that left nothing behind but its record may be rerun under another config.

``main_many`` runs several evaluation-only runs (e.g. the three seeds of a B2N cell); those
that engine/shared_pass.py says can share a pass over the test images get one; each run
still gets its own log.txt, record.json and predictions, exactly as if run alone.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from mmrl.config import RunArgs, changed_keys, config_hash, config_to_dict, dump_config_text, resolve_config
from mmrl.engine import rundir, shared_pass
from mmrl.engine.args import parse_run_args
from mmrl.engine.rundir import RECORD_NAME, SCHEMA, RunLock, read_record, run_identity, write_record
from mmrl.engine.runenv import code_version, environment, now, since_process_start
from mmrl.engine.runlog import log_path_for, run_logging
from mmrl.errors import CheckpointError, ConfigError, DatasetError, MMRLError, RunError, RunLocked
from mmrl.trainers import registry

log = logging.getLogger("mmrl.engine")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CHANGED, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def _lock(out: Path) -> RunLock:
    """The run's lock, held until the record is final (or RunLocked)."""
    lock = RunLock(out)
    try:
        got = lock.acquire()
    except OSError as e:
        raise RunError(f"cannot open the run's lock file {lock.path} ({e.strerror or e}); remove whatever is "
                       f"at that path.") from None
    if not got:
        raise RunLocked(f"another process is running {out} right now (it holds {lock.path})")
    return lock


def _check_output_dir(out: Path) -> None:
    """The run directory can be created and written, or a RunError naming it."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--output-dir {out} is an existing file, not a directory; pass a directory path.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create the run directory {out} ({e.strerror or e}); pass a writable "
                       f"--output-dir.") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunError(f"the run directory {out} is not writable; pass a writable --output-dir.")


def _check_dataset_name(name: str, set_by: str) -> None:
    """A registered dataset, refused before the run directory is made (the loader would refuse it later)."""
    from mmrl.datasets.registry import get_spec
    if not name:
        raise ConfigError("DATASET.NAME is not set: pass --dataset-config-file configs/datasets/<stem>.yaml.")
    try:
        get_spec(name, exact_case=True)
    except DatasetError as e:
        raise ConfigError(f"DATASET.NAME {name!r} (set by {set_by}): {e}") from None


class Run:
    """One run directory: its arguments, config, record, lock and log."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.args: RunArgs = parse_run_args(argv)
        resolved = resolve_config(self.args)
        self.cfg = resolved.cfg
        if not self.cfg.TRAINER.NAME:
            raise ConfigError(f"no method to run: pass --trainer (one of {', '.join(registry.names())}).")
        _check_dataset_name(self.cfg.DATASET.NAME, resolved.provenance.get("DATASET.NAME", "default"))
        self.out = Path(self.cfg.OUTPUT_DIR).expanduser().resolve()
        if self.out.exists() and not self.out.is_dir():
            _check_output_dir(self.out)
        root = self.cfg.DATASET.ROOT
        if root and not os.path.isdir(os.path.expanduser(root)):
            raise RunError(f"--root {root} is not a folder (DATASET.ROOT). Pass the folder that holds the dataset "
                           f"folders; leave --root out only to run the built-in demo dataset.")
        from mmrl.clip.backbone import check_backbone_options
        check_backbone_options(self.cfg.MODEL.BACKBONE.NAME, self.cfg.MODEL.BACKBONE.WEIGHTS)
        self.identity = run_identity(self.args)
        self.hash = config_hash(self.cfg, self.identity)
        self.previous = read_record(self.out)
        self.unfinished_training: dict | None = None
        self.lock: RunLock | None = None
        self.record: dict[str, Any] = {}
        self.trainer = None

    def check_existing(self) -> int | None:
        """An exit code when the directory must not be run (done already, or another config), else None."""
        prev = self.previous
        if prev is None:
            left = rundir.state_files(self.out)
            if left:
                print(f"error: {self.out} holds run files ({', '.join(left[:4])}) but no {RECORD_NAME}, so "
                      f"nothing tells which config wrote them; they are not resumed or overwritten. "
                      f"{self._start_over()}", file=sys.stderr)
                return EXIT_CHANGED
            return None
        status = prev.get("status")
        if prev.get("config_hash") == self.hash:
            if status != "complete":
                return None  # resume the same config
            changed = self._evaluated_checkpoint_changed(prev)
            if changed:
                print(f"error: {self.out} holds a complete evaluation of another checkpoint: {changed}. It is not "
                      f"overwritten. {self._start_over()}", file=sys.stderr)
                return EXIT_CHANGED
            print(f"Run already complete at {self.out} ({RECORD_NAME}, config {self.hash}); nothing to do.")
            return EXIT_OK
        left = rundir.state_files(self.out)
        if status != "complete" and not left:
            return None  # a failed start left nothing to mix with; its record goes into history
        what = "a complete run" if status == "complete" else f"an unfinished run ({RECORD_NAME} says {status!r})"
        rows = "\n".join(f"  {k}: {old!r} -> {new!r}" for k, old, new in self._changes(prev)) or \
            "  (no key differs: the run was made by another version of the harness)"
        consequence = ("It is not overwritten" if status == "complete" else
                       f"Resuming it ({', '.join(left[:3])}) would mix two configs in one result")
        print(f"error: {self.out} holds {what} of another config (hash {prev.get('config_hash')}; this command: "
              f"{self.hash}). {consequence}.\nChanged (recorded -> this command):\n{rows}\n{self._start_over()}",
              file=sys.stderr)
        return EXIT_CHANGED

    def _evaluated_checkpoint_changed(self, prev: dict) -> str | None:
        """Why a complete evaluation no longer describes --model-dir's checkpoint (None if it does)."""
        loaded = prev.get("checkpoint") or {}
        if not (self.args.eval_only and self.args.model_dir and loaded.get("sha256")):
            return None
        try:
            path = rundir.find_checkpoint(self.args.model_dir, self.args.load_epoch, self._model_folder)
        except CheckpointError:
            return None  # the training is gone: the record still says what was evaluated
        now = rundir.file_sha256(path)
        if now == loaded["sha256"]:
            return None
        return (f"{path} now has sha256 {now[:12]}, but this run evaluated {loaded.get('path')} with sha256 "
                f"{loaded['sha256'][:12]} (the training was rerun since)")

    def _changes(self, prev: dict) -> list[tuple[str, Any, Any]]:
        rows = changed_keys(prev.get("config") or {}, self.cfg)
        old_ident = prev.get("identity") or {"eval_only": prev.get("mode") == "eval"}
        for k in sorted(set(old_ident) | set(self.identity)):
            if old_ident.get(k) != self.identity.get(k):
                rows.append((f"--{k.replace('_', '-')}", old_ident.get(k), self.identity.get(k)))
        return rows

    def _start_over(self) -> str:
        return (f"To start over, use another --output-dir or move this one aside (`mv {self.out} {self.out}.old`); "
                f"to continue it, rerun the command that made it (its argv is in {RECORD_NAME}).")

    @property
    def _model_folder(self) -> str:
        return registry.get(self.cfg.TRAINER.NAME).model_folder

    def check_model_dir(self) -> None:
        """--eval-only: refuse a --model-dir of another method, without the checkpoint to load, or whose
        training (our record.json) is not complete."""
        a = self.args
        if not (a.eval_only and a.model_dir):
            return
        train = read_record(a.model_dir)
        trained = (train or {}).get("trainer")
        if trained and trained != self.cfg.TRAINER.NAME:
            raise RunError(f"--model-dir {a.model_dir} holds a {trained} training (its {RECORD_NAME}), but this run is "
                           f"--trainer {self.cfg.TRAINER.NAME}; pass the run directory of a "
                           f"{self.cfg.TRAINER.NAME} training, or --trainer {trained} with its config.")
        if train is None or train.get("status") == "complete":
            # no checkpoint to load (an empty folder, a --load-epoch it does not have): named before the run starts
            rundir.find_checkpoint(a.model_dir, a.load_epoch, self._model_folder)
            return
        try:
            found = rundir.checkpoint_epoch(rundir.find_checkpoint(a.model_dir, a.load_epoch, self._model_folder))
        except CheckpointError:
            found = None
        expected = ((train.get("config") or {}).get("OPTIM") or {}).get("MAX_EPOCH")
        info = {"status": train.get("status"), "checkpoint_epoch": found, "max_epoch": expected}
        where = (f"its {RECORD_NAME} says {info['status']!r}; the checkpoint found is epoch {found} of {expected}"
                 if found is not None else f"its {RECORD_NAME} says {info['status']!r} and it has no checkpoint")
        if not a.allow_unfinished:
            raise RunError(f"--model-dir {a.model_dir} holds an unfinished training: {where}. Finish it first "
                           f"(rerun its training command: it resumes), or pass --allow-unfinished to evaluate that "
                           f"checkpoint anyway (recorded in this run's {RECORD_NAME}).")
        log.warning("Evaluating an unfinished training (--allow-unfinished): %s", where)
        self.unfinished_training = info

    @property
    def log_path(self) -> Path:
        return log_path_for(str(self.out))

    def logging(self):
        return run_logging(self.log_path)

    def begin(self) -> None:
        from mmrl.engine.trainer import seed_everything
        cfg, args = self.cfg, self.args
        _check_output_dir(self.out)
        self.lock = _lock(self.out)
        left = rundir.remove_temp_files(self.out)
        if left:
            print(f"Removed what a killed run left half-written in {self.out}: {', '.join(left)}")
        self.record = {
            "schema": SCHEMA, "status": "running", "error": None, "mode": "eval" if args.eval_only else "train",
            "trainer": cfg.TRAINER.NAME, "dataset": cfg.DATASET.NAME, "task": cfg.TASK, "seed": cfg.SEED,
            "shots": cfg.DATASET.NUM_SHOTS, "subsample": cfg.DATASET.SUBSAMPLE_CLASSES, "output_dir": str(self.out),
            "argv": self.argv, "config": config_to_dict(cfg), "config_hash": self.hash, "identity": self.identity,
            "model_dir": str(Path(args.model_dir).resolve()) if args.model_dir else None, "checkpoint": None,
            "code_version": code_version(), "env": environment(cfg.USE_CUDA), "precision": None,
            "timings": {"started": now(), "process_start_s": since_process_start()}, "params": None, "metrics": None,
        }
        if self.unfinished_training is not None:
            self.record["unfinished_training"] = dict(self.unfinished_training, allowed_by="--allow-unfinished")
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
        for k, v in environment(self.cfg.USE_CUDA).items():
            log.info("%s: %s", k, v)
        log.info("")

    def build(self) -> None:
        """Header, data, model and (eval) weights: everything before training or testing."""
        from mmrl.engine.trainer import Trainer
        self.print_header()
        eval_only = self.args.eval_only or not registry.get(self.cfg.TRAINER.NAME).trains
        self.trainer = t = Trainer(self.cfg, self.out, eval_only=eval_only, model_dir=self.args.model_dir,
                                   load_epoch=self.args.load_epoch)
        self.record["precision"] = t.precision
        for phase, build in (("data_s", t.build_data), ("model_s", t.build_model)):
            start = time.time()
            build()
            t.timings[phase] = time.time() - start
        self.record["params"] = t.parameter_counts()
        if t.backbone_info is not None:
            self.record["backbone"] = vars(t.backbone_info)
            self._check_backbone_weights(t.backbone_info)
        if t.loaded_checkpoint is not None:
            self.record["checkpoint"] = t.loaded_checkpoint

    def _check_backbone_weights(self, info) -> None:
        """An evaluation runs on the frozen weights its training ran on: a weights file is in the
        config by its path only (a resume checks the hash its resume file keeps)."""
        if not (info.sha256 and self.args.eval_only and self.args.model_dir):
            return
        used = (read_record(self.args.model_dir) or {}).get("backbone") or {}
        if used.get("sha256") and used["sha256"] != info.sha256:
            raise RunError(f"--model-dir {self.args.model_dir} ran on backbone weights {used.get('path')} (sha256 "
                           f"{used['sha256'][:12]}), but this run loaded {info.path} (sha256 {info.sha256[:12]}): its "
                           f"learned tensors would run on other frozen weights. Set MODEL.BACKBONE.WEIGHTS to a file "
                           f"holding the weights it was trained with.")

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
        self.record["timings"].update(finished=now(), wall_s=round(time.time() - self.t0, 3),
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
        done = run.check_existing()
        if done is not None:
            return None, done
        run.check_model_dir()
        run.begin()
    except MMRLError as e:
        print(f"error: {e}", file=sys.stderr)
        return None, EXIT_LOCKED if isinstance(e, RunLocked) else EXIT_USAGE
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
    """Several eval-only runs; those that agree on engine/shared_pass.py's facts share one test pass."""
    from mmrl.engine.trainer import evaluate_trainers
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

    for group in shared_pass.group([r for _, r in ready], lambda r: shared_pass.run_key(r.trainer)):
        t0 = time.time()
        try:
            outputs = evaluate_trainers([r.trainer for r in group])
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

