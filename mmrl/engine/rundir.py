"""The run directory: what a run leaves on disk, which checkpoint stands for it, and who may
run it. The engine, the sweep and the tables all read a run through this module.

    <run>/log.txt                    the Dassl lines (engine.runlog writes, engine.logparse reads)
    <run>/record.json                the truth about the run (schema below)
    <run>/<model folder>/            the method's (MultiModalRepresentationLearner for MMRL, MMRL++)
          model.pth.tar-<E>          a checkpoint per saved epoch (engine.checkpoint's format)
          checkpoint                 names the latest one (Dassl's pointer file)
          resume.pth                 the state a killed run continues from
    <run>/predictions.npz            impath, label, pred, head (and logits)
    <parent>/.<run name>.lock        held by whoever runs it: a train.py, or a sweep and the
                                     train.py it starts

record.json, schema 1:
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
                                              # (+ "allow_unfinished", "no_train" when set)
      "model_dir": "<abs>" | null,            # eval: where the weights came from
      "checkpoint": {"path": ..., "sha256": ..., "epoch": ..., "notes": ...} | null,   # eval: the file loaded
      "unfinished_training": {...} | absent,  # eval with --allow-unfinished: the training's status
      "code_version": "...", "env": {...},
      "precision": {"requested": "amp", "used": "fp32", "test_requested": "fp32", "test_used": "fp32"},
      "timings": {"started": iso, "process_start_s": float, "finished": iso, "wall_s": float,
                  "data_s": float, "model_s": float, "train_s": float, "eval_s": float},
      "backbone": {...} | absent,             # the backbone's name, source, weights path and SHA-256
      "train_step": {...} | absent,           # a training's step mode (CUDA graph or eager)
      "params": {"trainable": int, "total": int},
      "metrics": {"accuracy": float, "error": float, "macro_f1": float, "total": int, "correct": int},
      "history": [...previous records of this dir that were superseded...]   # optional
    }
Writes are atomic (temp file + rename), so a reader never sees half a record.

The lock sits beside the run directory, not inside it: a sweep may move the directory aside
(history) while it holds the lock. ``fcntl.flock`` locks belong to the open file, so the
kernel drops them when the holder dies: no stale locks. Across hosts the lock holds where the
shared filesystem implements flock (NFS with locking, CephFS, GPFS, Lustre with -o flock); a
filesystem that refuses flock is refused, one that keeps locks per host (Lustre -o localflock,
NFS -o nolock) cannot be told apart from a local one. A sweep holds the lock while it
decides, and hands the open file to the train.py it starts (``LOCK_FDS_ENV``), so exactly
one lock guards a run from decision to record.
"""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmrl.config import RunArgs, config_hash, resolve_config
from mmrl.data.fileio import atomic_write_text, killed_writes
from mmrl.errors import CheckpointError, RecordError, RunError
from mmrl.trainers import registry
from mmrl.utils.download import sha256_file

RECORD_NAME = "record.json"
SCHEMA = 1
PREDICTIONS = "predictions.npz"
RESUME_NAME = "resume.pth"
LOCK_FDS_ENV = "MMRL_RUN_LOCK_FDS"  # comma-separated descriptors of run locks a parent process holds


# ---------------------------------------------------------------------------------------------
# record.json

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
    bad = _misshapen_fields(rec)
    if bad:
        raise RecordError(f"{p} is not a run record this harness wrote: {', '.join(bad)}. {corrupt_record_hint(p)}")
    return rec


_MAPPING_FIELDS = ("metrics", "config", "identity", "checkpoint", "backbone", "timings", "env", "params")


def _misshapen_fields(rec: dict[str, Any]) -> list[str]:
    """The fields a reader of the record relies on that have another JSON type than the one written."""
    bad = [f"{k!r} is a {type(rec[k]).__name__}, not an object" for k in _MAPPING_FIELDS
           if rec.get(k) is not None and not isinstance(rec[k], dict)]
    acc = rec["metrics"].get("accuracy") if isinstance(rec.get("metrics"), dict) else None
    if acc is not None and (isinstance(acc, bool) or not isinstance(acc, (int, float))):
        bad.append(f"'metrics.accuracy' is {acc!r}, not a number")
    if rec.get("history") is not None and not isinstance(rec["history"], list):
        bad.append("'history' is not a list")
    return bad


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


# ---------------------------------------------------------------------------------------------
# Checkpoints: where they are and which one an evaluation loads

def model_folder(run_dir: str | os.PathLike, folder: str | None = None) -> Path:
    """The run's model folder: ``folder`` (the method's, when it is known), else the one of the
    registered methods' folders the run has (the first method's name when it has none)."""
    if folder:
        return Path(run_dir) / folder
    names = registry.model_folders()
    present = [n for n in names if (Path(run_dir) / n).is_dir()]
    if len(present) > 1:
        raise CheckpointError(f"{run_dir} holds the model folders of several methods ({', '.join(present)}); "
                              f"a run directory belongs to one run. Move it aside.")
    return Path(run_dir) / (present[0] if present else names[0])


def checkpoint_epoch(path: Path) -> int | None:
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def find_checkpoint(model_dir: str | os.PathLike, load_epoch: int | None = None, folder: str | None = None) -> Path:
    """The file an evaluation of ``model_dir`` loads (ours or the authors'): ``--load-epoch``'s,
    else model-best, else the one the ``checkpoint`` file names, else the highest epoch."""
    folder = model_folder(model_dir, folder)
    if not Path(model_dir).is_dir():
        what = "is a file, not a folder" if Path(model_dir).exists() else "does not exist"
        raise CheckpointError(f"--model-dir {model_dir} {what}; pass the run directory of a training run.")
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint found: {folder} does not exist. Train first (without --eval-only) "
                              f"or point --model-dir at a finished training run.")
    if load_epoch is not None:
        path = folder / f"model.pth.tar-{load_epoch}"
        if not path.is_file():
            have = sorted(p.name for p in folder.glob("model.pth.tar-*"))
            raise CheckpointError(f"--load-epoch {load_epoch}: {path} not found (available: {have or 'none'})")
        return path
    best = folder / "model-best.pth.tar"
    if best.is_file():
        return best
    named = folder / "checkpoint"
    if named.is_file():
        name = named.read_text(encoding="utf-8", errors="replace").strip()
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise CheckpointError(f"{named} names {name!r}, not a checkpoint file in {folder}; restore it "
                                  f"or pass --load-epoch.")
        cand = folder / name
        if cand.is_file():
            return cand
    files = sorted(folder.glob("model.pth.tar-*"), key=lambda p: checkpoint_epoch(p) or -1)
    if not files:
        raise CheckpointError(f"no checkpoint found in {folder} (expected model.pth.tar-<epoch>). "
                              f"The training run may not have finished.")
    return files[-1]


def write_checkpoint_pointer(path: Path) -> None:
    """Name ``path`` as the latest checkpoint of its folder (Dassl's ``checkpoint`` file)."""
    atomic_write_text(path.parent / "checkpoint", path.name + "\n")


_sha_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint, hashed once per (file, mtime, size) in this process."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    if key not in _sha_cache:
        _sha_cache[key] = sha256_file(path)
    return _sha_cache[key]


def checkpoint_sha256(model_dir: str | os.PathLike, load_epoch: int | None = None,
                      folder: str | None = None) -> str | None:
    """SHA-256 of the checkpoint an evaluation of ``model_dir`` would load now (None: there is none)."""
    try:
        return file_sha256(find_checkpoint(model_dir, load_epoch, folder))
    except CheckpointError:
        return None


def state_files(out: Path) -> list[str]:
    """What a run left that a rerun would resume from or mix with (checkpoints, predictions)."""
    found = [f"{name}/{p.name}" for name in registry.model_folders() if (out / name).is_dir()
             for p in sorted((out / name).iterdir()) if not p.name.startswith(".")]
    if (out / PREDICTIONS).is_file():
        found.append(PREDICTIONS)
    return found


def remove_temp_files(out: Path) -> list[str]:
    """Remove what a killed writer left under a temp name (``fileio.killed_writes``) in the run
    directory and its model folders; returns their names. Only the lock's holder calls this."""
    gone = []
    for folder in [out, *(out / name for name in registry.model_folders())]:
        for p in killed_writes(folder):
            p.unlink()
            gone.append(str(p.relative_to(out)))
    return gone


# ---------------------------------------------------------------------------------------------
# The lock

def lock_path(run_dir: str | os.PathLike) -> Path:
    p = Path(run_dir)
    return p.parent / f".{p.name}.lock"


def lock_fds(env: Mapping[str, str]) -> tuple[int, ...]:
    """The lock descriptors handed down in ``env`` (what a child must inherit)."""
    return tuple(int(s) for s in env.get(LOCK_FDS_ENV, "").split(",") if s.strip().isdigit())


def handoff_env(locks: list["RunLock"]) -> dict[str, str]:
    """The environment that lets a child process adopt these held locks (with ``pass_fds``)."""
    return {LOCK_FDS_ENV: ",".join(str(lock.fd) for lock in locks if lock.fd is not None)}


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class RunLock:
    """The run's exclusive lock; ``acquire()`` returns False when another process holds it.

    A process started by the holder (the sweep's train.py) adopts the holder's open file,
    named in ``$MMRL_RUN_LOCK_FDS``, instead of competing with it."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = lock_path(run_dir)
        self.fd: int | None = None
        self._adopted = False

    def acquire(self) -> bool:
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for fd in lock_fds(os.environ):
            if _same_file(fd, self.path):
                self.fd, self._adopted = fd, True  # the parent's lock: already ours
                return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as e:
            os.close(fd)
            raise RunError(f"cannot lock {self.path} ({e.strerror or e}): the run directory's filesystem does not "
                           f"support file locks (flock), so nothing would keep a second process or host off this "
                           f"run. Put the runs on a filesystem with locks (Lustre: mount with -o flock).") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for a human wondering who holds it
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is None:
            return
        if not self._adopted:  # unlocking a shared open file would unlock it for the parent too
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        self.fd, self._adopted = None, False

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(run_dir: str | os.PathLike) -> bool:
    """Whether some process (a sweep or a train.py) holds the run's lock now (probe, not kept)."""
    try:
        fd = os.open(lock_path(run_dir), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        # shared: a holder's lock is exclusive, and on NFS (a byte-range lock there) an exclusive
        # one needs the file open for writing
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our probe lock too
    return False
