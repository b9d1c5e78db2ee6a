"""What state a job's run directory is in, and what a sweep should do about it.

States (``mmrl status`` prints them):
    complete  record.json says complete, its config hash is the one these arguments give,
              and (for an evaluation) the training it loaded has not been rerun since
    running   another process (a sweep, or a train.py started by hand) holds the run's lock
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

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mmrl.engine.args import parse_run_args
from mmrl.engine.logparse import last_result
from mmrl.engine.rundir import checkpoint_sha256, expected_hash, is_locked, read_record
from mmrl.errors import RecordError
from mmrl.sweep.plan import Job

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
    if loaded:  # the file this evaluation's --load-epoch picks now, chosen as the engine chooses
        now = checkpoint_sha256(job.model_dir, (rec.get("identity") or {}).get("load_epoch"))
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
        return JobState("running", "elsewhere", "another process (a sweep or a train.py) holds its lock")
    try:
        rec = read_record(run)
    except RecordError as e:  # moved aside with the unreadable file, never read as a result
        return JobState("failed", "rerun", str(e))
    if rec is None:
        # hidden files (temp files) say nothing about a run's results
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
