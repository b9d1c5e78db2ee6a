"""Run one job under its lock: decide (skip / resume / rerun), act, and report the outcome.

The job itself is started by a *runner*: any callable ``runner(job, env, console_path) ->
exit code``.  The default, :class:`CommandRunner`, starts ``python -m mmrl train <argv>`` in
a subprocess (a crash cannot take the sweep down); tests inject quick fake runners.
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mmrl.engine.records import read_record
from mmrl.errors import MMRLError
from mmrl.results.logparse import tail
from mmrl.sweep.history import move_aside
from mmrl.sweep.lock import RunLock
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
                                  cwd=self.cwd, env={**os.environ, **env})
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

    @property
    def problem(self) -> bool:
        return not self.ok and self.action != "elsewhere"


def _verdict(job: Job, rc: int) -> tuple[bool, str]:
    rec = read_record(job.run_dir)
    if rc != 0:
        why = (rec or {}).get("error") or ""
        return False, f"exit code {rc}" + (f": {why}" if why else "")
    if not rec:
        return False, "exit code 0 but no record.json was written"
    if rec.get("status") != "complete":
        return False, f"exit code 0 but record.json says {rec.get('status')!r}"
    return True, ""


def run_job(job: Job, runner: Runner, env: dict | None = None, want_hash: str | None = None) -> Outcome:
    """Run ``job`` unless it is complete, locked elsewhere, or its training is not complete."""
    lock = RunLock(job.run_dir)
    if not lock.acquire():
        return Outcome(job, "elsewhere", False, "running elsewhere (its lock is held); skipped")
    try:
        if job.model_dir:
            train = read_record(job.model_dir)
            if not train or train.get("status") != "complete":
                return Outcome(job, "blocked", False, f"needs its training {job.model_dir}, which is not complete")
        try:
            st = inspect(job, want_hash, probe_lock=False)
        except MMRLError as e:
            return Outcome(job, "failed", False, f"cannot resolve its config: {e}")
        if st.action == "skip":
            return Outcome(job, "skipped", True, "complete")
        if st.action == "elsewhere":
            return Outcome(job, "elsewhere", False, st.detail)
        moved = None
        if st.action == "rerun":
            moved = move_aside(job.run_dir, st.detail)
        elif st.action == "resume":
            log.info("resuming %s (%s)", job.run_dir, st.detail)
        console = Path(job.run_dir) / CONSOLE
        t0 = time.time()
        try:
            rc = int(runner(job, dict(env or {}), console))
        except Exception as e:  # a broken runner must not abort the sweep either
            rc, ok, why = -1, False, f"could not start: {type(e).__name__}: {e}"
        else:
            ok, why = _verdict(job, rc)
        action = {"run": "ran", "resume": "resumed", "rerun": "reran"}[st.action]
        lines = [] if ok else (tail(console, TAIL_LINES) or tail(Path(job.run_dir) / "log.txt", TAIL_LINES))
        return Outcome(job, action if ok else "failed", ok, why if not ok else (st.detail if moved else ""),
                       rc, lines, str(moved) if moved else None, time.time() - t0)
    finally:
        lock.release()
