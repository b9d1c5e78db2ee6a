"""`mmrl sweep --executor slurm` through submitit's real SlurmExecutor, on a stand-in SLURM
(tests/fake_slurm.py: sbatch runs the array tasks here with the SLURM_* variables set)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("submitit")

import fake_slurm  # noqa: E402
from mmrl.cli import main  # noqa: E402
from mmrl.sweep.plan import chains, expand  # noqa: E402
from mmrl.sweep.state import inspect  # noqa: E402
from test_sweep_support import REPO, SCRIPT  # noqa: E402

FAKE = f"{sys.executable} {SCRIPT}"


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """The stand-in SLURM on PATH; its state folder.  Tasks see this checkout (PYTHONPATH)."""
    monkeypatch.chdir(REPO)
    for var in ("FAKE_FAIL", "FAKE_CRASH", "FAKE_SLEEP", "MMRL_TRAIN_COMMAND", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    for k, v in fake_slurm.install(tmp_path / "bin", tmp_path / "slurm").items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.txt"))
    return tmp_path / "slurm"


def _calls(tmp_path) -> Counter:
    f = tmp_path / "calls.txt"
    return Counter(line.split()[0] for line in f.read_text().splitlines()) if f.exists() else Counter()


def _wait_idle(state: Path, timeout: float = 60) -> None:
    """Until no task of the stand-in is pending or running."""
    end = time.time() + timeout
    while any(p.read_text() in ("PENDING", "RUNNING") for p in state.glob("*.state")):
        assert time.time() < end, "the stand-in SLURM's tasks did not finish"
        time.sleep(0.1)


def _sel(out, *more):
    return ["--protocol", "b2n", "--trainer", "MMRL", "--datasets", "eurosat", "dtd", "oxford_pets", "--seeds", "1",
            "--root", "/data", "--output", out, "--command", FAKE, *more]


@pytest.mark.slow
def test_every_chain_runs_once_failures_name_their_log_and_a_resubmission_runs_only_the_rest(
        cluster, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "output")
    jobs = expand("b2n", trainers=["MMRL"], datasets=["eurosat", "dtd", "oxford_pets"], seeds=[1], root="/data",
                  output=out)
    monkeypatch.setenv("FAKE_FAIL", "train_base/dtd/")
    flags = ["--executor", "slurm", "--wait", "--parallel", "2", "--partition", "gpu", "--timeout-min", "90",
             "--cpus-per-task", "4", "--mem-gb", "8", "--slurm-param", "account=proj", "--slurm-param", "qos=high"]
    assert main(["sweep", *_sel(out, *flags)]) == 1
    text = capsys.readouterr().out
    dtd = [j for j in jobs if "/dtd/" in j.run_dir]
    assert f"log: {Path(dtd[0].run_dir) / 'console.txt'}" in text, text
    assert _calls(tmp_path) == Counter(j.run_dir for j in jobs if j is not dtd[1])  # once each; dtd's eval blocked
    assert sorted(p.read_text() for p in cluster.glob("*.runs")) == ["1", "1", "1"]
    script = next(cluster.glob("*.sbatch")).read_text()
    for line in ("--array=0-2%2", "--partition=gpu", "--time=90", "--cpus-per-task=4", "--mem=8GB",
                 "--account=proj", "--qos=high", "--gpus-per-node=1", "--job-name=mmrl-b2n"):
        assert f"#SBATCH {line}\n" in script, (line, script)

    done = {j.run_dir: Path(j.run_dir, "record.json").stat().st_mtime_ns for j in jobs if j not in dtd}
    monkeypatch.delenv("FAKE_FAIL")
    (tmp_path / "calls.txt").unlink()
    assert main(["sweep", *_sel(out, "--executor", "slurm", "--wait")]) == 0
    assert _calls(tmp_path) == Counter(j.run_dir for j in dtd)  # only the failed chain was submitted and ran
    assert {d: Path(d, "record.json").stat().st_mtime_ns for d in done} == done
    assert all(inspect(j).state == "complete" for j in jobs)
    assert main(["sweep", *_sel(out, "--executor", "slurm")]) == 0
    assert "nothing to submit" in capsys.readouterr().out


@pytest.mark.slow
def test_two_sweeps_over_one_output_root_never_run_a_job_twice(cluster, tmp_path, monkeypatch):
    out = str(tmp_path / "output")
    monkeypatch.setenv("FAKE_SLEEP", "1")
    assert main(["sweep", *_sel(out, "--executor", "slurm")]) == 0          # not waited for
    main(["sweep", *_sel(out, "--executor", "slurm", "--wait")])
    _wait_idle(cluster)
    jobs = expand("b2n", trainers=["MMRL"], datasets=["eurosat", "dtd", "oxford_pets"], seeds=[1], root="/data",
                  output=out)
    assert max(_calls(tmp_path).values()) == 1
    assert main(["sweep", *_sel(out, "--executor", "slurm", "--wait")]) == 0  # whatever was left, once more
    _wait_idle(cluster)
    assert _calls(tmp_path) == Counter(j.run_dir for j in jobs)
    assert all(inspect(j).state == "complete" for j in jobs)


def _demo_run(out: str) -> Path:
    return Path(out) / "few_shot/demo/shots_1/MMRL/demo/seed1"


@pytest.mark.slow
def test_a_task_signalled_before_its_time_limit_is_requeued_and_resumes_to_the_uninterrupted_result(
        cluster, tmp_path):
    # the embedded demo, trained for real: once straight through, once signalled (USR2, as SLURM does
    # --signal seconds before the time limit) in the middle of its training
    sel = ["sweep", "--protocol", "fs", "--trainer", "MMRL", "--shots", "1", "--seeds", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref, out = str(tmp_path / "straight"), str(tmp_path / "output")
    subprocess.run([sys.executable, "-m", "mmrl", *sel, "--output", ref], env=env, check=True, capture_output=True)
    sweep = subprocess.Popen([sys.executable, "-m", "mmrl", *sel, "--output", out, "--executor", "slurm", "--wait"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = _demo_run(out) / "log.txt"
    end = time.time() + 120
    while not (log.exists() and "epoch [4/" in log.read_text()):
        assert time.time() < end and sweep.poll() is None, "the training never reached epoch 4"
        time.sleep(0.1)
    task = next(cluster.glob("*.pgid")).stem
    subprocess.run(["scancel", task, "--signal", "USR2"], check=True)
    text = sweep.communicate(timeout=180)[0]
    assert sweep.returncode == 0, text
    assert "1 resumed" in text, text
    assert (cluster / f"{task}.runs").read_text() == "2"
    assert "will resume training" in log.read_text()
    got, want = (json.loads((_demo_run(d) / "record.json").read_text()) for d in (out, ref))
    assert got["status"] == "complete" and got["metrics"] == want["metrics"]
    import numpy as np
    a, b = (np.load(_demo_run(d) / "predictions.npz") for d in (out, ref))
    assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)


@pytest.mark.slow
def test_the_printed_array_script_covers_the_pending_chains_and_run_by_hand_completes_the_sweep(cluster, tmp_path):
    out = str(tmp_path / "output")
    jobs = expand("b2n", trainers=["MMRL"], datasets=["eurosat", "dtd", "oxford_pets"], seeds=[1], root="/data",
                  output=out)
    groups = chains(jobs)
    assert main(["sweep", *_sel(out, "--datasets", "dtd")]) == 0  # chain of dtd done beforehand, locally
    script = tmp_path / "array.sbatch"
    assert main(["sweep", *_sel(out, "--executor", "print", "--script", str(script))]) == 0
    subprocess.run(["bash", "-n", str(script)], check=True)
    pending = [i for i, g in enumerate(groups) if "/dtd/" not in g[0].run_dir]
    array = next(line for line in script.read_text().splitlines() if line.startswith("#SBATCH --array="))
    assert fake_slurm._array(array.split("=", 1)[1]) == (pending, 16), array
    before = _calls(tmp_path)
    for i in pending:
        subprocess.run(["bash", str(script)], env={**os.environ, "SLURM_ARRAY_TASK_ID": str(i)}, check=True,
                       capture_output=True)
    assert _calls(tmp_path) - before == Counter(j.run_dir for j in jobs if "/dtd/" not in j.run_dir)
    assert all(inspect(j).state == "complete" for j in jobs)


def test_slurm_params_take_sbatch_spelling_and_typed_values_and_a_wrong_key_is_named(cluster, tmp_path, capsys):
    out = str(tmp_path / "output")
    sel = ["sweep", "--protocol", "fs", "--trainer", "MMRL", "--datasets", "eurosat", "--shots", "1", "--seeds", "1",
           "--root", "/data", "--output", out, "--command", FAKE, "--executor", "slurm"]
    # sbatch's own spelling (mail-type), a flag without value (exclusive=true), a number (nodes=1)
    assert main([*sel, "--slurm-param", "mail-type=END", "--slurm-param", "exclusive=true",
                 "--slurm-param", "nodes=1"]) == 0
    script = next(cluster.glob("*.sbatch")).read_text()
    assert "#SBATCH --mail-type=END\n" in script and "#SBATCH --exclusive\n" in script, script
    _wait_idle(cluster)
    capsys.readouterr()
    assert main([*sel, "--shots", "2", "--slurm-param", "acount=proj"]) == 2
    err = capsys.readouterr().err
    assert "--slurm-param acount=proj" in err and "account" in err and "Traceback" not in err, err


def test_the_printed_script_keeps_a_fractional_memory_request():
    from mmrl.sweep.printer import sbatch_script
    text = sbatch_script([0], [], cwd="/w", python="python", parallelism=1, timeout_min=60, log_dir="/l", mem_gb=8.5)
    assert "#SBATCH --mem=8704M\n" in text, text
    assert "#SBATCH --mem=16G\n" in sbatch_script([0], [], cwd="/w", python="python", parallelism=1,
                                                   timeout_min=60, log_dir="/l", mem_gb=16)


def test_a_chain_whose_training_runs_in_another_sweep_is_left_to_that_sweep(cluster, tmp_path, capsys):
    from mmrl.engine.rundir import RunLock
    out = str(tmp_path / "output")
    sel = ["sweep", *_sel(out, "--datasets", "eurosat")]
    train = expand("b2n", trainers=["MMRL"], datasets=["eurosat"], seeds=[1], root="/data", output=out)[0]
    Path(train.run_dir).mkdir(parents=True)
    lock = RunLock(train.run_dir)
    assert lock.acquire()  # another sweep's array task is training it (and will evaluate it)
    try:
        assert main([*sel, "--executor", "slurm"]) == 0
        assert "nothing to submit" in capsys.readouterr().out
        assert not list(cluster.glob("*.sbatch"))  # no allocation spent on a task that could only wait
        assert main(sel) == 0  # the local executor: the evaluation is not a failure to fix either
        text = capsys.readouterr().out
        assert "BLOCKED" not in text and "2 job(s) are running in another sweep" in text, text
        assert main([*sel, "--executor", "print", "--script", str(tmp_path / "a.sbatch")]) == 0
        text = capsys.readouterr().out
        assert "# 0 command(s) to run" in text and "test_new" not in text, text  # nor a command that could only fail
    finally:
        lock.release()


@pytest.mark.slow
def test_a_cancelled_array_task_is_reported_failed_with_its_slurm_log(cluster, tmp_path, monkeypatch):
    out = str(tmp_path / "output")
    monkeypatch.setenv("FAKE_SLEEP", "3")
    sweep = subprocess.Popen([sys.executable, "-m", "mmrl", "sweep", *_sel(out, "--datasets", "eurosat", "dtd"),
                              "--executor", "slurm", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    end = time.time() + 60
    while not (cluster / "1000_1.pgid").exists():
        assert time.time() < end and sweep.poll() is None, "task 1 never started"
        time.sleep(0.05)
    subprocess.run(["scancel", "1000_1"], check=True)  # e.g. a node failure or a user's scancel
    text = sweep.communicate(timeout=120)[0]
    assert sweep.returncode == 1, text
    log = Path(out) / ".submitit" / "1000_1_0_log.err"
    assert text.count("why: array task 1000_1 failed") == 2 and text.count(f"log: {log}") == 2, text
    assert log.exists() and "state: CANCELLED" in text
