"""Sweep failure modes: stand-in commands, killed shared evaluations, duplicate runs, array scripts."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mmrl.errors import ConfigError
from mmrl.sweep.executors import run_local
from mmrl.sweep.plan import expand
from mmrl.sweep.runner import CommandRunner
from mmrl.sweep.state import inspect, job_hash
from test_sweep_support import SCRIPT, REPO, out  # noqa: F401 (fixture)


@pytest.mark.slow
def test_a_train_command_without_eval_many_runs_a_cells_evaluations_one_by_one(out, monkeypatch):
    # $MMRL_TRAIN_COMMAND = "python train.py" (or a stand-in script) has no `eval-many` sub-command
    monkeypatch.setenv("MMRL_TRAIN_COMMAND", f"{sys.executable} {SCRIPT}")
    jobs = expand("b2n", trainers=["MMRL"], datasets=["eurosat"], seeds=[1, 2], root="/data", output=out)
    res = run_local(jobs, CommandRunner(cwd=str(REPO)))
    assert [o.action for o in res] == ["ran"] * 4, [(o.job.run_dir, o.detail, o.tail[-3:]) for o in res]
    assert [inspect(j).state for j in jobs] == ["complete"] * 4


def _cell_plan(out, seeds=(1, 2)):
    """A cell's seeds, trained (fake engine): their evaluations share one eval-many process."""
    from test_sweep_support import FakeRunner
    jobs = expand("b2n", trainers=["MMRL"], datasets=["eurosat"], seeds=list(seeds), root="/data", output=out)
    assert all(o.ok for o in run_local([j for j in jobs if j.role == "train"], FakeRunner()))
    return jobs


def test_a_killed_eval_many_names_its_real_exit_code_and_spares_the_finished_evaluation(out, monkeypatch):
    import json
    import subprocess

    import mmrl.sweep.runner as runner_mod
    from mmrl.engine.rundir import write_record
    from test_sweep_support import fake_main
    jobs = _cell_plan(out)
    evals = [j for j in jobs if j.role == "eval"]

    def killed_midway(cmd, **kw):  # evaluates the first run, then is killed (OOM) inside the second
        assert cmd[-2] == "eval-many"
        first, second = json.loads(Path(cmd[-1]).read_text())
        assert fake_main(first) == 0
        out_dir = second[second.index("--output-dir") + 1]
        write_record(out_dir, {"schema": 1, "status": "running", "config_hash": job_hash(evals[1]),
                               "output_dir": out_dir})
        return subprocess.CompletedProcess(cmd, -9)
    monkeypatch.setattr(runner_mod.subprocess, "run", killed_midway)
    res = [o for o in run_local(jobs, CommandRunner(cwd=str(REPO))) if o.job.role == "eval"]
    assert [o.action for o in res] == ["ran", "failed"], [(o.detail, o.tail) for o in res]
    assert res[1].returncode == -9 and "exit code -9" in res[1].detail, res[1].detail
    assert inspect(evals[0]).state == "complete" and inspect(evals[1]).action == "resume"


def test_an_eval_many_that_cannot_start_fails_its_jobs_not_the_sweep(out, monkeypatch):
    import mmrl.sweep.runner as runner_mod
    jobs = _cell_plan(out)
    evals = [j for j in jobs if j.role == "eval"]

    def missing(cmd, **kw):
        raise FileNotFoundError(2, "No such file or directory", cmd[0])
    monkeypatch.setattr(runner_mod.subprocess, "run", missing)
    res = [o for o in run_local(jobs, CommandRunner(cwd=str(REPO))) if o.job.role == "eval"]
    assert [o.action for o in res] == ["failed", "failed"]
    assert all("could not start" in o.detail and "No such file" in o.detail for o in res), [o.detail for o in res]
    assert [inspect(j).action for j in evals] == ["resume", "resume"]  # no lock left behind


def test_the_summary_of_a_failed_run_names_its_log_file(out, monkeypatch, capsys):
    from mmrl.cli import main
    monkeypatch.setenv("FAKE_FAIL", "seed1")
    sel = ["--protocol", "fs", "--trainer", "MMRL", "--datasets", "eurosat", "--seeds", "1", "--shots", "1",
           "--output", out, "--root", "/data", "--command", f"{sys.executable} {SCRIPT}"]
    assert main(["sweep", *sel]) == 1
    text = capsys.readouterr().out
    run = expand("fs", trainers=["MMRL"], datasets=["eurosat"], seeds=[1], shots=[1], root="/data", output=out)[0]
    assert f"log: {Path(run.run_dir) / 'console.txt'}" in text, text


def test_a_crashed_array_task_names_its_log_for_every_job_of_its_chain(tmp_path):
    from types import SimpleNamespace

    from mmrl.sweep import slurm

    class Crashed:
        job_id = "123_4"
        paths = SimpleNamespace(stderr=tmp_path / "123_4_0_log.err")

        def results(self):
            raise RuntimeError("Job 123_4 (task: 0) with path ... has not produced any output (state: NODE_FAIL)")
    chain = expand("b2n", trainers=["MMRL"], datasets=["eurosat"], seeds=[1], root="/d", output=str(tmp_path))
    outcomes = slurm.wait([Crashed()], [chain])
    assert [o.action for o in outcomes] == ["failed", "failed"]
    assert all(o.log == str(Crashed.paths.stderr) and "NODE_FAIL" in o.tail[-1] for o in outcomes)


def test_gpu_pool_never_shares_a_gpu_and_accounts_for_every_job_when_one_fails(out, monkeypatch):
    import threading
    import time

    from mmrl.sweep.executors import run_gpu_pool
    from test_sweep_support import fake_main
    spans, lock = [], threading.Lock()

    def runner(job, env, console):
        t0 = time.monotonic()
        time.sleep(0.05)
        rc = fake_main(list(job.argv), env)
        with lock:
            spans.append((env["CUDA_VISIBLE_DEVICES"], t0, time.monotonic()))
        return rc
    monkeypatch.setenv("FAKE_FAIL", "train_base/dtd/shots_16/MMRL/vit_b16/seed2")
    jobs = expand("b2n", trainers=["MMRL"], datasets=["dtd", "eurosat", "oxford_pets"], seeds=[1, 2, 3],
                  root="/d", output=out)
    res = run_gpu_pool(jobs, runner, ["0", "1", "2"])
    assert [o.job.id for o in res] == [j.id for j in jobs]
    bad = {j.id for j in jobs if "dtd/shots_16/MMRL/vit_b16/seed2" in j.id}
    assert {o.job.id: o.action for o in res if not o.ok} == {i: a for i, a in zip(sorted(bad), ["blocked", "failed"])}
    assert len(spans) == len(jobs) - 1  # everything but the blocked evaluation ran, once
    for gpu in "012":
        mine = sorted((a, b) for g, a, b in spans if g == gpu)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(mine, mine[1:])), f"GPU {gpu} ran two jobs at once"


def test_a_run_listed_twice_is_one_job(out):
    from mmrl.sweep.printer import command_lines
    jobs = expand("fs", trainers=["MMRL", "MMRL"], datasets=["dtd", "dtd"], seeds=[1, 1, 2], shots=[1, 1],
                  root="/d", output=out)
    assert len(jobs) == len({j.id for j in jobs}) == 2
    lines = command_lines(jobs, ("train.py",), {})
    assert len(lines) == len(set(lines)) == 2  # the printed commands never run one directory twice


@pytest.mark.parametrize("visible,expected", [("", []), ("-1", []), ("1,-1,2", ["1"]), ("3, 1", ["3", "1"]),
                                              ("GPU-8a3e,MIG-77", ["GPU-8a3e", "MIG-77"])])
def test_gpus_are_those_cuda_visible_devices_shows(monkeypatch, visible, expected):
    """CUDA_VISIBLE_DEVICES set, even to "" or -1 (no GPU), is what the jobs may use: never every
    GPU nvidia-smi lists. CUDA reads the list up to its first invalid entry."""
    import subprocess

    from mmrl.sweep import executors
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setattr(executors.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(executors.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "0\n1\n2\n3\n"))
    assert executors.detect_gpus() == expected
    if expected:
        assert executors.detect_gpus(expected[-1]) == [expected[-1]]
    with pytest.raises(ConfigError, match="not in CUDA_VISIBLE_DEVICES"):
        executors.detect_gpus("0,2")  # ids outside the visible ones belong to someone else
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert executors.detect_gpus("0,2") == ["0", "2"]
