"""SLURM through submitit: one array task per chain (a training, then its evaluations).

A chain runs its jobs one after another inside one allocation, so no SLURM dependencies are
needed and the same code runs under submitit's local executor (tests).  On a timeout or a
preemption submitit calls :meth:`ChainTask.checkpoint`, which requeues the same task: the
rerun skips the complete runs and the engine resumes a partial training from its resume file.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrl.errors import ConfigError, RunError
from mmrl.sweep.executors import run_local
from mmrl.sweep.plan import Job
from mmrl.sweep.runner import Outcome, Runner

try:
    import submitit
except ImportError:  # optional dependency: pip install 'mmrl[slurm]'
    submitit = None

log = logging.getLogger("mmrl.sweep")


def _require_submitit():
    if submitit is None:
        raise RunError("--executor slurm needs submitit: pip install 'mmrl[slurm]' (or pip install submitit); "
                       "--executor print writes an sbatch script without it")
    return submitit


if submitit is not None:
    class ChainTask(submitit.helpers.Checkpointable):
        """The callable submitted per array task; requeued as is on timeout (checkpointing)."""

        def __call__(self, chain: list[Job], runner: Runner) -> list[Outcome]:
            return run_local(chain, runner)
else:  # pragma: no cover
    ChainTask = None


@dataclass
class SlurmOptions:
    folder: str                       # submitit's logs and pickles
    cluster: str = "slurm"            # "local": submitit.LocalExecutor (tests, a single machine)
    parallelism: int = 16             # at most this many array tasks at once
    timeout_min: int = 24 * 60
    partition: str | None = None
    gpus_per_node: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    name: str = "mmrl"
    extra: dict[str, Any] = field(default_factory=dict)  # more slurm_* parameters, e.g. {"account": "x"}

    def parameters(self) -> dict[str, Any]:
        p: dict[str, Any] = {"timeout_min": int(self.timeout_min), "gpus_per_node": int(self.gpus_per_node),
                             "name": self.name, "slurm_array_parallelism": int(self.parallelism)}
        if self.cpus_per_task:
            p["cpus_per_task"] = int(self.cpus_per_task)
        if self.mem_gb:
            p["mem_gb"] = float(self.mem_gb)
        if self.partition:
            p["slurm_partition"] = self.partition
        for k, v in self.extra.items():
            p[k if k.startswith("slurm_") else f"slurm_{k}"] = v
        return p


def submit(chains: list[list[Job]], runner: Runner, opts: SlurmOptions) -> list:
    """Submit one array task per chain; returns submitit jobs (``.results()[0]`` = outcomes)."""
    sm = _require_submitit()
    if not chains:
        return []
    if opts.cluster == "slurm" and shutil.which("sbatch") is None:
        # submitit's auto-detection would quietly fall back to running here; say so instead
        raise RunError("--executor slurm: sbatch is not on PATH (not a SLURM login node?). Use --executor print "
                       "to get an sbatch script, or --cluster local to run the arrays on this machine")
    valid = sm.SlurmExecutor._valid_parameters()
    for k, v in opts.extra.items():
        if k.removeprefix("slurm_") not in valid:
            raise ConfigError(f"--slurm-param {k.removeprefix('slurm_')}={v}: submitit's SLURM executor has no "
                              f"parameter {k.removeprefix('slurm_')!r}; it takes {', '.join(sorted(valid))}")
    Path(opts.folder).mkdir(parents=True, exist_ok=True)
    try:
        executor = sm.AutoExecutor(folder=opts.folder, cluster=opts.cluster)
    except (RuntimeError, ValueError) as e:  # no sbatch here, or an unknown cluster name
        raise RunError(f"submitit found no usable cluster ({e}); on a SLURM login node check that sbatch is on "
                       "PATH, or use --cluster local (run the arrays on this machine) or --executor print") from None
    executor.update_parameters(**opts.parameters())
    jobs = executor.map_array(ChainTask(), chains, [runner] * len(chains))
    for chain, job in zip(chains, jobs):
        log.info("submitted %s: %s", job.job_id, chain[0].run_dir)
    return jobs


def wait(submitted: list, chains: list[list[Job]]) -> list[Outcome]:
    """Block until every array task ends; a task that crashed reports its chain as failed."""
    outcomes: list[Outcome] = []
    for job, chain in zip(submitted, chains):
        try:
            outcomes.extend(job.results()[0])
        except Exception as e:  # submitit raises the task's exception (or a FailedJobError)
            msg = str(e).strip().splitlines()
            for j in chain:
                outcomes.append(Outcome(j, "failed", False, f"array task {job.job_id} failed",
                                        tail=msg[-20:], log=str(job.paths.stderr)))
    return outcomes

