"""A stand-in SLURM for the sweep's cluster tests (no tests here): ``sbatch``, ``srun``, ``sacct``,
``squeue``, ``scontrol requeue`` and ``scancel [--signal]``, as submitit's SlurmExecutor calls them.

:func:`install` puts the commands on PATH; their state lives in ``$FAKE_SLURM_DIR``:
``calls.log`` (one line per command), ``<id>.sbatch`` (each submitted script), and per task
``<task>.state`` (PENDING RUNNING COMPLETED FAILED CANCELLED), ``<task>.pgid`` (the step's
process group, which ``scancel --signal`` signals whole, as slurmstepd signals every process of
a step) and ``<task>.runs`` (how many times it started).  ``sbatch`` starts a detached manager
that runs the array's tasks (``%N`` at once) with the SLURM_* variables set, and runs a task
again when ``scontrol requeue`` asked for it while it ran.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

NAMES = ("sbatch", "srun", "sacct", "squeue", "scontrol", "scancel")


def install(bin_dir: Path, state_dir: Path) -> dict:
    """Write the commands into ``bin_dir``; returns the environment variables to set."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        p = bin_dir / name
        p.write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} {name} "$@"\n')
        p.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_DIR": str(state_dir)}


def _dir() -> Path:
    return Path(os.environ["FAKE_SLURM_DIR"])


def _state(task: str, value: str | None = None) -> str:
    f = _dir() / f"{task}.state"
    if value is not None:
        f.write_text(value)
    return f.read_text() if f.exists() else ""


def _directives(script: str) -> dict[str, str]:
    out = {}
    for m in re.finditer(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.M):
        out[m.group(1)] = (m.group(2) or "").strip("'\"")
    return out


def _array(spec: str) -> tuple[list[int], int]:
    spec, _, cap = spec.partition("%")
    idx: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        idx.extend(range(int(a), int(b or a) + 1))
    return idx, int(cap) if cap else len(idx)


def sbatch(args: list[str]) -> int:
    script = Path(args[-1]).read_text()
    d = _dir()
    counter = d / "next_id"
    job_id = int(counter.read_text()) if counter.exists() else 1000
    counter.write_text(str(job_id + 1))
    (d / f"{job_id}.sbatch").write_text(script)
    opts = _directives(script)
    tasks = _array(opts["array"])[0] if "array" in opts else [None]
    for i in tasks:
        _state(f"{job_id}_{i}" if i is not None else str(job_id), "PENDING")
    subprocess.Popen([sys.executable, __file__, "_manager", str(job_id), os.getcwd()], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Submitted batch job {job_id}")
    return 0


def _fill(pattern: str, env: dict) -> str:
    return (pattern.replace("%A", env.get("SLURM_ARRAY_JOB_ID", "")).replace("%a", env.get("SLURM_ARRAY_TASK_ID", ""))
            .replace("%j", env["SLURM_JOB_ID"]).replace("%t", "0"))


def _start(job_id: int, index: int | None, cwd: str, serial: int) -> tuple[str, subprocess.Popen]:
    d = _dir()
    task = f"{job_id}_{index}" if index is not None else str(job_id)
    runs = d / f"{task}.runs"
    n = int(runs.read_text()) if runs.exists() else 0
    runs.write_text(str(n + 1))
    env = {**os.environ, "SLURM_JOB_ID": str(serial), "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
           "SLURM_NODEID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "fake1",
           "SLURM_RESTART_COUNT": str(n), "SLURM_SUBMIT_DIR": cwd}
    if index is not None:
        env.update(SLURM_ARRAY_JOB_ID=str(job_id), SLURM_ARRAY_TASK_ID=str(index))
    opts = _directives((d / f"{job_id}.sbatch").read_text())
    out = _fill(opts.get("output", str(d / "slurm-%j.out")), env)
    err = _fill(opts.get("error", out), env)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    _state(task, "RUNNING")
    (d / f"{task}.requeue").unlink(missing_ok=True)
    with open(out, "a") as fo, open(err, "a") as fe:
        proc = subprocess.Popen(["bash", str(d / f"{job_id}.sbatch")], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=fo, stderr=fe)
    return task, proc


def manager(job_id: int, cwd: str) -> int:
    d = _dir()
    opts = _directives((d / f"{job_id}.sbatch").read_text())
    queue, cap = _array(opts["array"]) if "array" in opts else ([None], 1)
    running: dict = {}
    serial = job_id * 100
    while queue or running:
        while queue and len(running) < cap:
            index = queue.pop(0)
            serial += 1
            task, proc = _start(job_id, index, cwd, serial if index is not None else job_id)
            running[task] = (index, proc)
        time.sleep(0.05)
        for task, (index, proc) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[task]
            if _state(task) == "CANCELLED":
                continue
            if (d / f"{task}.requeue").exists():
                _state(task, "PENDING")
                queue.append(index)
            else:
                _state(task, "COMPLETED" if proc.returncode == 0 else "FAILED")
    return 0


def srun(args: list[str]) -> int:
    out = err = None
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag in ("--output", "--error"):
            value = args.pop(0)
            out, err = (value, err) if flag == "--output" else (out, value)
    env = dict(os.environ)
    task = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_TASK_ID" in env
            else env["SLURM_JOB_ID"])
    os.setsid()  # the step: scancel --signal reaches every process in it
    (_dir() / f"{task}.pgid").write_text(str(os.getpgrp()))
    if out:
        fd = os.open(_fill(out, env), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(os.open(_fill(err, env), os.O_WRONLY | os.O_CREAT | os.O_APPEND) if err else fd, 2)
    os.execvp(args[0], args)


def _tasks(ids: list[str]) -> list[str]:
    d = _dir()
    out = []
    for jid in ids:
        out += sorted(p.stem for p in d.glob("*.state") if p.stem == jid or p.stem.startswith(f"{jid}_"))
    return out


def sacct(args: list[str]) -> int:
    ids = [args[i + 1] for i, a in enumerate(args) if a == "-j"]
    print("JobID|State|NodeList")
    for task in _tasks(ids):
        print(f"{task}|{_state(task)}|fake1")
    return 0


def squeue(args: list[str]) -> int:
    print("JOBID STATE")
    for p in sorted(_dir().glob("*.state")):
        if p.read_text() in ("PENDING", "RUNNING"):
            print(f"{p.stem} {p.read_text()}")
    return 0


def scontrol(args: list[str]) -> int:
    if args[:1] != ["requeue"]:
        print(f"fake scontrol: unsupported {args}", file=sys.stderr)
        return 1
    for task in _tasks(args[1].split(",")):
        (_dir() / f"{task}.requeue").write_text("")
    return 0


def scancel(args: list[str]) -> int:
    sig = None
    if "--signal" in args:
        i = args.index("--signal")
        sig = args[i + 1]
        args = args[:i] + args[i + 2:]
    for task in _tasks(args):
        pgid = _dir() / f"{task}.pgid"
        if sig is None:
            _state(task, "CANCELLED")
        if pgid.exists() and _state(task) in ("RUNNING", "CANCELLED"):
            name = sig or "SIGTERM"
            try:
                os.killpg(int(pgid.read_text()), getattr(signal, name if name.startswith("SIG") else "SIG" + name))
            except ProcessLookupError:
                pass
    return 0


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd != "_manager":
        with open(_dir() / "calls.log", "a") as f:
            f.write(" ".join([cmd, *rest]) + "\n")
    if cmd == "_manager":
        sys.exit(manager(int(rest[0]), rest[1]))
    sys.exit({"sbatch": sbatch, "srun": srun, "sacct": sacct, "squeue": squeue, "scontrol": scontrol,
              "scancel": scancel}[cmd](rest))
