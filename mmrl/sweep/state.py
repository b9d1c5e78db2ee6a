"""What state a job's run directory is in, and what a sweep should do about it.

States (``mmrl status`` prints them):
    complete  record.json says complete, its config hash is the one these arguments give,
              and (for an evaluation) the training it loaded has not been rerun since
    running   another sweep holds the run's lock, or a train.py process holds the engine's
    failed    the record says failed, or running with nobody running it (killed), or the
              directory has files but no record
    missing   no run directory (or an empty one)
    stale     the config changed, the training was rerun after this evaluation, or the
              directory holds only an authors'-style log.txt

An unreadable record.json is "failed": the directory is moved aside (file kept) and rerun.

Actions: complete -> skip; running -> skip (reported); missing -> run; failed with a record of
the same config -> resume in place (the engine continues from its resume file); stale or a
directory without a record -> move it aside (``history.move_aside``) and run afresh.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mmrl.engine.args import parse_run_args
from mmrl.engine.records import expected_hash, read_record
from mmrl.errors import RecordError
from mmrl.results.logparse import last_result
from mmrl.sweep.lock import engine_running, is_locked
from mmrl.sweep.plan import Job

MODEL_FOLDER = "MultiModalRepresentationLearner"
CONSOLE = "console.txt"  # the job process's stdout+stderr, written by the sweep's runner
STATES = ("complete", "running", "failed", "missing", "stale")


@dataclass
class JobState:
    state: str
    action: str            # skip | elsewhere | run | resume | rerun
    detail: str = ""
    record: dict[str, Any] | None = None


_hash_cache: dict[tuple[str, ...], str] = {}


def job_hash(job: Job) -> str:
    """The config hash the engine will record for this job (raises ConfigError if unresolvable)."""
    key = job.argv
    if key not in _hash_cache:
        _hash_cache[key] = expected_hash(parse_run_args(list(job.argv)))
    return _hash_cache[key]


_sha_cache: dict[tuple[str, float, int], str] = {}


def checkpoint_file(train_dir: str | os.PathLike) -> Path | None:
    """The checkpoint an evaluation of this training loads (named in the ``checkpoint`` file)."""
    folder = Path(train_dir) / MODEL_FOLDER
    named = folder / "checkpoint"
    if named.is_file():
        p = folder / named.read_text().strip()
        if p.is_file():
            return p
    files = sorted(folder.glob("model*.pth*"), key=lambda f: f.stat().st_mtime) if folder.is_dir() else []
    return files[-1] if files else None


def checkpoint_sha256(train_dir: str | os.PathLike) -> str | None:
    p = checkpoint_file(train_dir)
    if p is None:
        return None
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime, st.st_size)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def _time(rec: dict | None, key: str) -> datetime | None:
    try:
        return datetime.fromisoformat(str((rec or {}).get("timings", {})[key]))
    except (KeyError, TypeError, ValueError):
        return None


def eval_staleness(job: Job, rec: dict) -> str | None:
    """Why an evaluation no longer matches its training on disk (None when it still does)."""
    if not job.model_dir:
        return None
    try:
        train = read_record(job.model_dir)
    except RecordError as e:
        return str(e)
    if not train or train.get("status") != "complete":
        return f"its training {job.model_dir} is not complete any more"
    loaded = (rec.get("checkpoint") or {}).get("sha256")
    if loaded:
        now = checkpoint_sha256(job.model_dir)
        if now and now != loaded:
            return f"its training was rerun since (checkpoint sha256 {loaded[:12]} -> {now[:12]})"
        return None
    started, finished = _time(rec, "started"), _time(train, "finished")
    if started and finished and started < finished:
        return f"its training finished at {finished.isoformat()}, after this evaluation started"
    return None


def inspect(job: Job, want_hash: str | None = None, *, probe_lock: bool = True) -> JobState:
    """The state of ``job``'s run directory.  ``want_hash`` None: computed from the arguments."""
    run = Path(job.run_dir)
    if probe_lock and is_locked(run):
        return JobState("running", "elsewhere", "another sweep holds its lock")
    if engine_running(run):
        return JobState("running", "elsewhere", "a train.py process is running it")
    try:
        rec = read_record(run)
    except RecordError as e:  # moved aside with the unreadable file, never read as a result
        return JobState("failed", "rerun", str(e))
    if rec is None:
        # hidden files (the engine's lock, temp files) say nothing about a run's results
        files = {p.name for p in run.iterdir() if not p.name.startswith(".")} if run.is_dir() else set()
        if not files:
            return JobState("missing", "run")
        if last_result(run / "log.txt") is not None:
            return JobState("stale", "rerun", "only a log.txt (no record.json): a run by other code")
        if files == {CONSOLE}:  # the process died before the engine started; nothing to keep
            return JobState("failed", "resume", "stopped before writing record.json (see console.txt)")
        return JobState("failed", "rerun", "files but no record.json (stopped before writing it)")
    want = want_hash if want_hash is not None else job_hash(job)
    if rec.get("config_hash") != want:
        return JobState("stale", "rerun", f"config changed (recorded {rec.get('config_hash')}, now {want})", rec)
    status = rec.get("status")
    if status == "complete":
        why = eval_staleness(job, rec)
        if why:
            return JobState("stale", "rerun", why, rec)
        return JobState("complete", "skip", "", rec)
    if status == "running":  # nobody holds the engine's lock (checked above): it was killed
        return JobState("failed", "resume", "interrupted (record says running; nobody runs it)", rec)
    if status == "failed":
        return JobState("failed", "resume", str(rec.get("error") or "failed"), rec)
    return JobState("failed", "rerun", f"unknown record status {status!r}", rec)
