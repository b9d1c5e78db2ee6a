"""In-process executors: ``local`` (one job after another) and ``gpus`` (a pool of GPUs).

Both start every job through a runner (a subprocess by default), so a crashing job only
fails itself.  An evaluation starts only after its training succeeded in this sweep (or was
already complete); when the training failed the evaluation is reported as blocked.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable

from mmrl.errors import ConfigError, RunError
from mmrl.sweep.plan import Job
from mmrl.sweep.runner import Outcome, Runner, run_job, run_jobs_together, shares_test_pass

log = logging.getLogger("mmrl.sweep")

Progress = Callable[[Outcome], None]


def _blocked_by(job: Job, outcomes: dict[str, Outcome]) -> Outcome | None:
    for dep in job.after:
        o = outcomes.get(dep)
        if o is not None and o.action == "elsewhere":
            # not a failure: the sweep that holds the training evaluates it, or a later sweep does
            return Outcome(job, "elsewhere", False, f"its training {dep} is running elsewhere")
        if o is not None and not o.ok:
            return Outcome(job, "blocked", False, f"its training {dep} did not complete ({o.action})")
    return None


def order_for_shared_evals(jobs: list[Job]) -> list[Job]:
    """Keep the plan's order, but hold each evaluation back until every training of its cell
    has come, so the cell's seeds can be evaluated in one shared pass."""
    ids = {j.id for j in jobs}
    waiting: list[Job] = []
    emitted: set[str] = set()
    out: list[Job] = []

    def flush() -> None:
        for ev in list(waiting):
            cell = [j for j in jobs if shares_test_pass(ev, j)]
            if all(d in emitted or d not in ids for j in cell for d in j.after):
                waiting.remove(ev)
                out.append(ev)
                emitted.add(ev.id)

    for job in jobs:
        if job.role == "eval" and job.model_dir is not None:
            waiting.append(job)
        else:
            out.append(job)
            emitted.add(job.id)
        flush()
    out.extend(waiting)
    return out


def run_local(jobs: list[Job], runner: Runner, progress: Progress | None = None) -> list[Outcome]:
    """One job after another, in the plan's order (trainings come before their evaluations);
    evaluations of one cell's seeds share one pass over the test images."""
    original = jobs
    jobs = order_for_shared_evals(jobs)
    outcomes: dict[str, Outcome] = {}

    def record(out: Outcome) -> None:
        outcomes[out.job.id] = out
        if progress:
            progress(out)

    for i, job in enumerate(jobs):
        if job.id in outcomes:
            continue
        blocked = _blocked_by(job, outcomes)
        if blocked:
            record(blocked)
            continue
        # the other seeds' evaluations of this cell, once their trainings are done, share one pass
        group = [job] + [j for j in jobs[i + 1:] if j.id not in outcomes and shares_test_pass(job, j)
                         and all(d in outcomes for d in j.after) and not _blocked_by(j, outcomes)]
        for out in (run_jobs_together(group, runner) if len(group) > 1 else [run_job(job, runner)]):
            record(out)
    return [outcomes[j.id] for j in original]


def detect_gpus(spec: str | None = None) -> list[str]:
    """GPU ids from ``--gpus 0,1`` (as CUDA_VISIBLE_DEVICES takes them: each job gets one), else
    CUDA_VISIBLE_DEVICES, else nvidia-smi, else torch."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = None
    if env is not None:  # set, even to "" or -1 (no GPU): only these are the sweep's
        visible = []
        for s in (s.strip() for s in env.split(",")):
            if not s or s.startswith("-"):
                break  # CUDA reads the list up to its first invalid entry
            visible.append(s)
    if spec:
        ids = [s.strip() for s in str(spec).split(",") if s.strip()]
        outside = [i for i in ids if visible is not None and i not in visible]
        if outside:  # e.g. a cluster allocation: the job would run on a GPU that belongs to someone else
            raise ConfigError(f"--gpus {spec}: {', '.join(outside)} not in CUDA_VISIBLE_DEVICES={env!r}, which "
                              f"holds the GPUs this sweep may use; name some of {visible or 'none'}, or leave "
                              f"--gpus out to use them all")
        return ids
    if visible is not None:
        return visible
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30).stdout
            ids = [s.strip() for s in out.splitlines() if s.strip().isdigit()]
            if ids:
                return ids
        except (OSError, subprocess.SubprocessError):
            pass
    import torch   # here, not at the top: the sweep itself needs no torch
    return [str(i) for i in range(torch.cuda.device_count())]


def _priorities(jobs: list[Job]) -> dict[str, float]:
    """A training's priority includes the evaluations it unlocks, so long chains start first."""
    prio = {j.id: j.cost for j in jobs}
    for j in jobs:
        for dep in j.after:
            if dep in prio:
                prio[dep] += j.cost
    return prio


def run_gpu_pool(jobs: list[Job], runner: Runner, gpus: list[str], progress: Progress | None = None) -> list[Outcome]:
    """One job per free GPU (CUDA_VISIBLE_DEVICES=<id>), largest first, no batch barriers."""
    if not gpus:
        raise RunError("no GPU found for --executor gpus: pass --gpus 0,1,... (or set CUDA_VISIBLE_DEVICES), "
                       "or use --executor local")
    by_id = {j.id: j for j in jobs}
    prio = _priorities(jobs)
    pending = list(jobs)
    outcomes: dict[str, Outcome] = {}
    running: dict = {}
    free = list(gpus)

    def finish(out: Outcome) -> None:
        outcomes[out.job.id] = out
        if progress:
            progress(out)

    with ThreadPoolExecutor(max_workers=len(gpus)) as pool:
        while pending or running:
            ready = []
            for job in list(pending):
                blocked = _blocked_by(job, outcomes)
                if blocked:
                    pending.remove(job)
                    finish(blocked)
                elif all(d in outcomes for d in job.after if d in by_id):
                    ready.append(job)
            ready.sort(key=lambda j: -prio[j.id])
            for job in ready[:len(free)]:
                pending.remove(job)
                gpu = free.pop(0)
                log.info("GPU %s: %s", gpu, job.run_dir)
                running[pool.submit(run_job, job, runner, {"CUDA_VISIBLE_DEVICES": gpu})] = (job, gpu)
            if not running:
                break  # nothing can start and nothing runs: only unsatisfiable jobs remain
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                job, gpu = running.pop(fut)
                free.append(gpu)
                try:
                    finish(fut.result())
                except Exception as e:  # run_job guards the runner; this is a bug guard
                    finish(Outcome(job, "failed", False, f"{type(e).__name__}: {e}"))
    for job in pending:
        finish(Outcome(job, "blocked", False, "its dependencies never became runnable"))
    return [outcomes[j.id] for j in jobs]
