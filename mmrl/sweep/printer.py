"""``--executor print``: the commands, and an sbatch array script, for clusters where
jobs cannot be submitted from Python.

The command list is the plain ``train.py`` commands of the jobs that still need to run, in
dependency order.  The sbatch script does not replay them blindly: array task ``i`` runs
``python -m mmrl sweep <same arguments> --chain i``, i.e. chain ``i`` of the plan with all of
the sweep's rules (skip complete runs, lock, resume, move stale runs aside), so the script
can be resubmitted after a timeout and continues where it stopped.
"""
from __future__ import annotations

import os
import shlex

from mmrl import plugins
from mmrl.sweep.plan import Job
from mmrl.sweep.state import JobState

# What a task needs from the submitting shell to see its plug-ins and their config files.
CARRIED = (plugins.ENV, "MMRL_CONFIGS")


def command_lines(jobs: list[Job], prefix: tuple[str, ...], states: dict[str, JobState]) -> list[str]:
    lines: list[str] = []
    for job in jobs:
        st = states.get(job.id)
        if st is not None and st.action in ("skip", "elsewhere"):
            continue
        if st is not None and st.action == "rerun":
            lines.append(f"# {job.run_dir}: {st.detail}; move it aside before rerunning")
        lines.append(shlex.join([*prefix, *job.argv]))
    return lines


def exports() -> list[str]:
    """The shell lines that give a job this process's plug-in variables."""
    return [f"export {k}={shlex.quote(os.environ[k])}" for k in CARRIED if os.environ.get(k)]


def _ranges(indices: list[int]) -> str:
    out, start = [], None
    for i, x in enumerate(indices):
        if start is None:
            start = x
        if i + 1 == len(indices) or indices[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ",".join(out)


def sbatch_script(chain_indices: list[int], sweep_argv: list[str], *, cwd: str, python: str,
                  parallelism: int, timeout_min: int, log_dir: str, name: str = "mmrl",
                  partition: str | None = None, gpus: int = 1, cpus_per_task: int | None = None,
                  mem_gb: float | None = None) -> str:
    hours, minutes = divmod(int(timeout_min), 60)
    head = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --array={_ranges(sorted(chain_indices))}%{int(parallelism)}",
        f"#SBATCH --gres=gpu:{int(gpus)}",
        f"#SBATCH --time={hours:02d}:{minutes:02d}:00",
        f"#SBATCH --output={log_dir}/%A_%a.out",
    ]
    if partition:
        head.append(f"#SBATCH --partition={partition}")
    if cpus_per_task:
        head.append(f"#SBATCH --cpus-per-task={int(cpus_per_task)}")
    if mem_gb:
        # whole gigabytes as G; otherwise megabytes, since --mem takes integers only
        head.append(f"#SBATCH --mem={int(mem_gb)}G" if float(mem_gb).is_integer()
                    else f"#SBATCH --mem={int(mem_gb * 1024)}M")
    body = [
        "",
        "# One array task = one chain of the plan (a training, then the evaluations that load it).",
        "# Resubmitting this script is safe: complete runs are skipped, partial ones resume.",
        "set -euo pipefail",
        f"cd {shlex.quote(cwd)}",
        *exports(),
        f"exec {shlex.quote(python)} -m mmrl sweep {shlex.join(sweep_argv)} --executor local "
        '--chain "$SLURM_ARRAY_TASK_ID"',
        "",
    ]
    return "\n".join(head + body)
