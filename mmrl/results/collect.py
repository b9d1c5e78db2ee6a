"""Read one accuracy per run: record.json first, else the last result block of log.txt.

A run counts only when its record says complete, its run identity (--eval-only, --load-epoch,
--allow-unfinished, --no-train) is the job's and, for an evaluation, its training has not been
rerun since (``sweep.state.eval_staleness``, what `mmrl status` calls stale); an unreadable record
is no result (its cell is refused like a missing seed), never a reason to read log.txt.  Directories without
a record (the authors' runs) fall back to log.txt; for cross-dataset runs the authors' layout
(base2new/train_base and base2new/test_new with CFG vit_b16_cross_datasets) is tried when
our cross_dataset/ directory does not exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmrl.engine.args import parse_run_args
from mmrl.engine.logparse import last_result
from mmrl.engine.rundir import read_record, run_identity
from mmrl.errors import RecordError
from mmrl.sweep.plan import Job
from mmrl.sweep.state import eval_staleness

_AUTHORS_CD = {"train": ("base2new", "train_base"), "test": ("base2new", "test_new")}


@dataclass
class Reading:
    value: float | None
    source: str        # "record" | "log" | why there is no value
    path: str
    record: dict | None = None   # the whole record (None for log.txt readings)

    @property
    def config(self) -> dict | None:
        """The record's resolved config."""
        return self.record.get("config") if self.record is not None else None


def authors_cd_dir(run_dir: str) -> Path | None:
    """Where the authors' scripts put the same CD run (docs/protocol.md#run-directories-and-aggregation)."""
    parts = Path(run_dir).parts
    for i in range(len(parts) - 1):
        if parts[i] == "cross_dataset" and parts[i + 1] in _AUTHORS_CD:
            return Path(*parts[:i], *_AUTHORS_CD[parts[i + 1]], *parts[i + 2:])
    return None


def _read_dir(run: Path) -> Reading | None:
    try:
        rec = read_record(run)
    except RecordError as e:  # never fall back to log.txt: the record is the truth about the run
        return Reading(None, str(e), str(run))
    if rec is not None:
        if rec.get("status") != "complete":
            return Reading(None, f"record.json says {rec.get('status')!r}", str(run))
        acc = (rec.get("metrics") or {}).get("accuracy")
        if acc is None:
            return Reading(None, "record.json has no metrics.accuracy", str(run))
        return Reading(float(acc), "record", str(run), rec)
    log = run / "log.txt"
    if log.is_file():
        v = last_result(log)
        return Reading(v, "log" if v is not None else "log.txt has no '=> result' block", str(run))
    return None


def _other_run(got: dict | None, job: Job) -> str | None:
    """How a record's run identity differs from the job's (None: it does not, or an older record
    without one), e.g. an evaluation of an unfinished training made by hand in the job's place."""
    if not isinstance(got, dict):
        return None
    want = run_identity(parse_run_args(list(job.argv)))
    diff = [f"--{k.replace('_', '-')} {got.get(k)!r} (the sweep's run: {want.get(k)!r})"
            for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
    return ", ".join(diff) or None


def read_job(job: Job) -> Reading:
    run = Path(job.run_dir)
    got = _read_dir(run)
    if got is None and job.protocol in ("cd", "dg"):
        alt = authors_cd_dir(job.run_dir)
        if alt is not None:
            got = _read_dir(alt)
    if got is not None and got.record is not None:
        other = _other_run(got.record.get("identity"), job)
        if other:
            return Reading(None, f"record.json is of another run than the sweep's: {other}; move it aside and "
                                 f"rerun the sweep", got.path)
        # an evaluation of a training rerun since: Base of one training, Novel of another
        stale = eval_staleness(job, got.record) if got.path == str(run) else None
        if stale:
            return Reading(None, f"stale evaluation: {stale}; rerun the sweep", got.path)
    return got or Reading(None, "not run", str(run))
