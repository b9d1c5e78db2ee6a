"""Run one job under its lock: decide (skip / resume / rerun), act, and report the outcome.

The job itself is started by a *runner*: any callable ``runner(job, env, console_path) ->
exit code``.  The default, :class:`CommandRunner`, starts ``python -m mmrl train <argv>`` in
a subprocess (a crash cannot take the sweep down); tests inject quick fake runners.  ``env``
hands the run's held lock down to the engine (``rundir.handoff_env``), which adopts it.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mmrl.engine import shared_pass
from mmrl.engine.logparse import tail
from mmrl.engine.rundir import RunLock, handoff_env, lock_fds, read_record
from mmrl.errors import MMRLError, RecordError
from mmrl.sweep.history import move_aside
from mmrl.sweep.plan import Job
from mmrl.sweep.state import CONSOLE, inspect

log = logging.getLogger("mmrl.sweep")

Runner = Callable[[Job, dict, Path], int]
TAIL_LINES = 20


def default_command() -> tuple[str, ...]:
    """How a job is started: $MMRL_TRAIN_COMMAND (e.g. "python train.py") or python -m mmrl train."""
    env = os.environ.get("MMRL_TRAIN_COMMAND")
    return tuple(shlex.split(env)) if env else (sys.executable, "-m", "mmrl", "train")


@dataclass(frozen=True)
class CommandRunner:
    """Start ``<prefix> <job argv>`` with stdout+stderr appended to the run's console.txt."""
    prefix: tuple[str, ...] = field(default_factory=default_command)
    cwd: str | None = None  # None: the sweep's working directory (the argv paths are relative to it)

    def command(self, job: Job) -> list[str]:
        return [*self.prefix, *job.argv]

    def __call__(self, job: Job, env: dict, console: Path) -> int:
        cmd = self.command(job)
        console.parent.mkdir(parents=True, exist_ok=True)
        with open(console, "a") as out:
            out.write(f"$ {shlex.join(cmd)}\n")
            out.flush()
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  cwd=self.cwd, env={**os.environ, **env}, pass_fds=lock_fds(env))
        return proc.returncode


@dataclass
class Outcome:
    job: Job
    action: str          # skipped | ran | resumed | reran | elsewhere | blocked | failed
    ok: bool             # the run is complete now
    detail: str = ""
    returncode: int | None = None
    tail: list[str] = field(default_factory=list)
    moved_to: str | None = None
    seconds: float = 0.0
    log: str | None = None   # the file ``tail`` comes from

    @property
    def problem(self) -> bool:
        return not self.ok and self.action != "elsewhere"


def _record(run_dir: str) -> dict | None:
    """The record, or {"status": "unreadable", "error": why} when the file cannot be read."""
    try:
        return read_record(run_dir)
    except RecordError as e:
        return {"status": "unreadable", "error": str(e)}


def _verdict(job: Job, rc: int) -> tuple[bool, str]:
    rec = _record(job.run_dir)
    if rc != 0:
        why = (rec or {}).get("error") or ""
        return False, f"exit code {rc}" + (f": {why}" if why else "")
    if not rec:
        return False, "exit code 0 but no record.json was written"
    if rec.get("status") != "complete":
        return False, f"exit code 0 but record.json says {rec.get('status')!r}"
    return True, ""


@dataclass
class _Prepared:
    job: Job
    lock: RunLock
    action: str                 # run | resume | rerun
    detail: str
    moved: Path | None


def _prepare(job: Job, want_hash: str | None) -> _Prepared | Outcome:
    """Lock the run and decide what to do; an Outcome when there is nothing to run."""
    lock = RunLock(job.run_dir)
    if not lock.acquire():
        return Outcome(job, "elsewhere", False, "running elsewhere (its lock is held); skipped")
    done: Outcome | None = None
    if job.model_dir:
        train = _record(job.model_dir)
        if not train or train.get("status") != "complete":
            why = f" ({train['error']})" if train and train.get("status") == "unreadable" else ""
            done = Outcome(job, "blocked", False, f"needs its training {job.model_dir}, which is not complete{why}")
    if done is None:
        try:
            st = inspect(job, want_hash, probe_lock=False)
        except MMRLError as e:
            done = Outcome(job, "failed", False, f"cannot resolve its config: {e}")
        else:
            if st.action == "skip":
                done = Outcome(job, "skipped", True, "complete")
            elif st.action == "elsewhere":
                done = Outcome(job, "elsewhere", False, st.detail)
    if done is not None:
        lock.release()
        return done
    moved = None
    if st.action == "rerun":
        moved = move_aside(job.run_dir, st.detail)
    elif st.action == "resume":
        log.info("resuming %s (%s)", job.run_dir, st.detail)
    return _Prepared(job, lock, st.action, st.detail, moved)


def _conclude(prep: _Prepared, rc: int | None, error: str, console: Path, seconds: float) -> Outcome:
    job = prep.job
    if rc is None:
        ok, why, rc = False, error, -1
    else:
        ok, why = _verdict(job, rc)
    action = {"run": "ran", "resume": "resumed", "rerun": "reran"}[prep.action]
    lines, log_file = [], None
    if not ok:
        for log_file in (console, Path(job.run_dir) / "log.txt"):
            lines = tail(log_file, TAIL_LINES)
            if lines:
                break
    return Outcome(job, action if ok else "failed", ok, why if not ok else (prep.detail if prep.moved else ""),
                   rc, lines, str(prep.moved) if prep.moved else None, seconds, str(log_file) if lines else None)


def run_job(job: Job, runner: Runner, env: dict | None = None, want_hash: str | None = None) -> Outcome:
    """Run ``job`` unless it is complete, locked elsewhere, or its training is not complete."""
    prep = _prepare(job, want_hash)
    if isinstance(prep, Outcome):
        return prep
    console = Path(job.run_dir) / CONSOLE
    t0 = time.time()
    try:
        try:
            rc, err = int(runner(job, {**(env or {}), **handoff_env([prep.lock])}, console)), ""
        except Exception as e:  # a broken runner must not abort the sweep either
            rc, err = None, f"could not start: {type(e).__name__}: {e}"
        return _conclude(prep, rc, err, console, time.time() - t0)
    finally:
        prep.lock.release()


def shares_test_pass(a: Job, b: Job) -> bool:
    """Whether two jobs go to one `mmrl eval-many` process: the engine's rule, read from their arguments
    (e.g. the seeds of one cell's evaluation)."""
    return shared_pass.can_share(a.argv, b.argv)


def run_jobs_together(jobs: list[Job], runner: Runner, env: dict | None = None) -> list[Outcome]:
    """Several evaluations in ONE engine process (`mmrl eval-many`): one shared pass over the
    test images and the layers below J.  Each run still gets its own log, record and lock.
    Runners other than the default command, and commands that are not `... mmrl train` (train.py,
    a stand-in: no eval-many sub-command), run the jobs one by one."""
    if (len(jobs) < 2 or not isinstance(runner, CommandRunner) or runner.prefix != default_command()
            or len(runner.prefix) < 2 or runner.prefix[-1] != "train" or Path(runner.prefix[-2]).name != "mmrl"):
        return [run_job(j, runner, env) for j in jobs]
    prepared, outcomes = [], {}
    for job in jobs:
        prep = _prepare(job, None)
        if isinstance(prep, Outcome):
            outcomes[job.id] = prep
        else:
            prepared.append(prep)
    if prepared:
        first = Path(prepared[0].job.run_dir)
        first.parent.mkdir(parents=True, exist_ok=True)  # the run dirs themselves may not exist yet
        fd, name = tempfile.mkstemp(dir=first.parent, prefix=".eval-many.", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump([list(p.job.argv) for p in prepared], f)
        spec = Path(name)
        cmd = [*runner.prefix[:-1], "eval-many", str(spec)]
        consoles = [Path(p.job.run_dir) / CONSOLE for p in prepared]
        t0 = time.time()
        try:
            consoles[0].parent.mkdir(parents=True, exist_ok=True)
            with open(consoles[0], "a") as out:
                out.write(f"$ {shlex.join(cmd)}\n")
                out.flush()
                locks = handoff_env([p.lock for p in prepared])
                try:
                    rc, err = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                             cwd=runner.cwd, env={**os.environ, **(env or {}), **locks},
                                             pass_fds=lock_fds(locks)).returncode, ""
                except OSError as e:  # as in run_job: a command that cannot start fails its jobs, not the sweep
                    rc, err = None, f"could not start {shlex.join(cmd)}: {type(e).__name__}: {e}"
            for c in consoles[1:]:
                c.parent.mkdir(parents=True, exist_ok=True)
                with open(c, "a") as f:
                    f.write(f"(evaluated in a shared pass; console output in {consoles[0]})\n")
            for p in prepared:
                # the process's exit code is the worst of its runs': a complete record is this run's own success
                done = rc is not None and (_record(p.job.run_dir) or {}).get("status") == "complete"
                outcomes[p.job.id] = _conclude(p, 0 if done else rc, err, consoles[0],
                                               (time.time() - t0) / len(prepared))
        finally:
            spec.unlink(missing_ok=True)
            for p in prepared:
                p.lock.release()
    return [outcomes[j.id] for j in jobs]
