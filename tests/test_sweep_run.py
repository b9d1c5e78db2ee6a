"""Sweep decisions (skip / resume / rerun / stale), the lock, executors and the CLI, on a fake engine."""
from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

import pytest

from mmrl.engine.rundir import read_record, write_record
from mmrl.errors import RunError
from mmrl.sweep.dataroot import resolve_data_root
from mmrl.sweep.executors import run_gpu_pool, run_local
from mmrl.engine.rundir import RunLock, find_checkpoint, is_locked, lock_path
from mmrl.sweep.plan import expand
from mmrl.sweep.runner import CommandRunner, run_job
from mmrl.sweep.state import inspect
from test_sweep_support import SCRIPT, FakeRunner, fake_main, REPO, out  # noqa: F401 (fixture)


def b2n(out, **kw):
    kw.setdefault("trainers", ["MMRL"])
    kw.setdefault("datasets", ["eurosat"])
    kw.setdefault("seeds", [1])
    return expand("b2n", root="/data", output=out, **kw)


def actions(outcomes):
    return [o.action for o in outcomes]


def test_runs_then_skips_complete_runs(out):
    jobs = b2n(out)
    assert [inspect(j).state for j in jobs] == ["missing", "missing"]
    assert actions(run_local(jobs, FakeRunner())) == ["ran", "ran"]
    assert [inspect(j).state for j in jobs] == ["complete", "complete"]
    assert actions(run_local(jobs, FakeRunner())) == ["skipped", "skipped"]


def test_failed_training_blocks_its_eval_then_resumes_in_place(out, monkeypatch):
    jobs = b2n(out, seeds=[1, 2])
    monkeypatch.setenv("FAKE_FAIL", "train_base/eurosat/shots_16/MMRL/vit_b16/seed1")
    res = run_local(jobs, FakeRunner())
    assert actions(res) == ["failed", "blocked", "ran", "ran"]  # a failure never aborts the sweep
    assert "fake failure" in res[0].detail and "did not complete" in res[1].detail
    st = inspect(jobs[0])
    assert (st.state, st.action) == ("failed", "resume")
    monkeypatch.delenv("FAKE_FAIL")
    assert actions(run_local(jobs, FakeRunner())) == ["resumed", "ran", "skipped", "skipped"]
    assert not (Path(jobs[0].run_dir).parent / ".history").exists()  # resumed in place, nothing moved


def test_unreadable_record_is_moved_aside_and_rerun_never_read(out):
    jobs = b2n(out)
    run_local(jobs, FakeRunner())
    rec_path = Path(jobs[0].run_dir) / "record.json"
    rec_path.write_text("{")
    st = inspect(jobs[0])
    assert (st.state, st.action) == ("failed", "rerun") and f"{rec_path} exists but cannot be read" in st.detail
    assert "cannot be read" in inspect(jobs[1]).detail  # its evaluation is stale: the training is unreadable
    res = run_local(jobs, FakeRunner())
    assert actions(res) == ["reran", "reran"]
    kept = Path(res[0].moved_to) / "record.json"
    assert kept.read_text() == "{" and read_record(jobs[0].run_dir)["status"] == "complete"


def test_changed_config_moves_the_old_run_aside_and_reruns(out):
    jobs = b2n(out)
    run_local(jobs, FakeRunner())
    old_hash = read_record(jobs[0].run_dir)["config_hash"]
    changed = b2n(out, extra_opts=["OPTIM.MAX_EPOCH", "3"])
    st = inspect(changed[0])
    assert st.state == "stale" and "config changed" in st.detail
    res = run_local(changed, FakeRunner())
    assert actions(res) == ["reran", "reran"]
    history = list((Path(jobs[0].run_dir).parent / ".history").iterdir())
    assert len(history) == 1 and json.loads((history[0] / "record.json").read_text())["config_hash"] == old_hash
    assert res[0].moved_to == str(history[0])
    assert read_record(jobs[0].run_dir)["config_hash"] != old_hash


def test_eval_is_stale_once_its_training_was_rerun(out):
    train, test = b2n(out)
    run_local([train, test], FakeRunner())
    # somebody retrains (new checkpoint); the evaluation of the old checkpoint is now stale
    fake_main(list(train.argv))
    st = inspect(test)
    assert st.state == "stale" and "checkpoint sha256" in st.detail
    assert actions(run_local([train, test], FakeRunner())) == ["skipped", "reran"]
    assert inspect(test).state == "complete"


def test_eval_staleness_checks_the_checkpoint_the_engine_loads(out):
    """Without a ``checkpoint`` file the engine loads the highest epoch, whatever the mtimes:
    an older epoch touched later must not make the evaluation look stale."""
    train, test = b2n(out)
    run_local([train, test], FakeRunner())
    folder = Path(train.run_dir) / "MultiModalRepresentationLearner"
    (folder / "checkpoint").unlink()
    (folder / "model.pth.tar-0").write_bytes(b"an older epoch, written last")
    assert find_checkpoint(train.run_dir).name == "model.pth.tar-1"
    assert inspect(test).state == "complete"
    (folder / "model-best.pth.tar").write_bytes(b"the engine prefers model-best")
    assert inspect(test).state == "stale"


def test_eval_without_checkpoint_hash_falls_back_to_finish_times(out):
    train, test = b2n(out)
    run_local([train, test], FakeRunner())
    rec = read_record(test.run_dir)
    rec.pop("checkpoint")
    rec["timings"]["started"] = "2000-01-01T00:00:00"
    write_record(test.run_dir, rec)
    assert "after this evaluation started" in inspect(test).detail


def test_interrupted_and_foreign_run_dirs(out):
    train, test = b2n(out)
    run_local([train], FakeRunner())
    rec = read_record(train.run_dir)
    rec["status"] = "running"  # killed: nobody holds the lock
    write_record(train.run_dir, rec)
    st = inspect(train)
    assert (st.state, st.action) == ("failed", "resume") and "interrupted" in st.detail
    # an authors' run dir: log.txt with a result, no record.json -> moved aside, rerun
    Path(test.run_dir).mkdir(parents=True)
    (Path(test.run_dir) / "log.txt").write_text("=> result\n* accuracy: 70.0%\n")
    st = inspect(test)
    assert (st.state, st.action) == ("stale", "rerun")


def test_lock_keeps_a_second_sweep_off_a_running_job(out):
    train, _ = b2n(out)
    held = RunLock(train.run_dir)
    assert held.acquire()
    try:
        assert is_locked(train.run_dir)
        assert inspect(train).state == "running"
        o = run_job(train, FakeRunner())
        assert o.action == "elsewhere" and not o.problem
        assert not Path(train.run_dir).exists()  # nothing ran
        assert not RunLock(train.run_dir).acquire()
    finally:
        held.release()
    assert not is_locked(train.run_dir)
    # a train.py started by hand holds the same lock, whoever opens it: also "running"
    Path(train.run_dir).mkdir(parents=True)
    engine = os.open(lock_path(train.run_dir), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(engine, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert inspect(train).state == "running" and run_job(train, FakeRunner()).action == "elsewhere"
    finally:
        os.close(engine)
    assert inspect(train).state == "missing"  # hidden files alone are no run
    assert run_job(train, FakeRunner()).action == "ran"


@pytest.mark.slow
def test_runner_exceptions_and_crashes_are_failures_with_log_tails(out, monkeypatch):
    train, test = b2n(out)

    def broken(job, env, console):
        raise OSError("no such interpreter")
    o = run_job(train, broken)
    assert o.action == "failed" and "no such interpreter" in o.detail
    monkeypatch.setenv("FAKE_CRASH", "train_base")
    runner = CommandRunner(prefix=(sys.executable, SCRIPT))
    res = run_local([train, test], runner)
    assert actions(res) == ["failed", "blocked"]
    assert res[0].returncode == 3 and any("fake crash" in line for line in res[0].tail)
    monkeypatch.delenv("FAKE_CRASH")
    assert actions(run_local([train, test], runner)) == ["resumed", "ran"]  # only console.txt was there


def test_gpu_pool_largest_first_one_job_per_gpu_and_deps(out, tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    jobs = expand("b2n", trainers=["MMRL"], datasets=["dtd", "imagenet"], seeds=[1], root="/d", output=out)
    res = run_gpu_pool(jobs, FakeRunner(), ["7"])
    assert all(o.ok for o in res)
    lines = [line.split() for line in calls.read_text().splitlines()]
    order = [Path(p).relative_to(out).parts[1:3] for p, _ in lines]
    # ImageNet's chain first; each evaluation after its training; CUDA_VISIBLE_DEVICES set per job
    assert order == [("train_base", "imagenet"), ("test_new", "imagenet"), ("train_base", "dtd"), ("test_new", "dtd")]
    assert {g for _, g in lines} == {"7"}
    # two GPUs: two trainings at once, each on its own GPU
    calls.unlink()
    monkeypatch.setenv("FAKE_SLEEP", "0.3")
    fs = expand("fs", trainers=["MMRL"], datasets=["dtd", "eurosat"], seeds=[1], shots=[1], root="/d", output=out)
    assert all(o.ok for o in run_gpu_pool(fs, FakeRunner(), ["0", "1"]))
    assert sorted(line.split()[1] for line in calls.read_text().splitlines()) == ["0", "1"]
    with pytest.raises(RunError, match="--gpus"):
        run_gpu_pool(jobs, FakeRunner(), [])


def test_data_root_cli_then_env_then_demo(monkeypatch):
    monkeypatch.delenv("DATA", raising=False)
    assert resolve_data_root("/x").path == "/x"
    monkeypatch.setenv("DATA", "/env")
    assert resolve_data_root(None).path == "/env"
    monkeypatch.delenv("DATA")
    import mmrl.demo.world as world
    monkeypatch.setattr(world, "ensure_demo_dataset", lambda: Path("/cache/mmrl/demo"))
    got = resolve_data_root(None)
    assert got.demo and got.path == "/cache/mmrl" and "demo" in got.note


def _cli(argv):
    from mmrl.cli import main
    return main(argv)


@pytest.mark.slow
def test_cli_sweep_status_and_print(out, tmp_path, monkeypatch, capsys):
    cmd = f"{sys.executable} {SCRIPT}"
    sel = ["--protocol", "b2n", "--trainer", "MMRL", "--datasets", "eurosat", "--seeds", "1", "2",
           "--output", out]
    assert _cli(["status", *sel]) == 1  # nothing yet: missing
    assert "missing" in capsys.readouterr().out
    monkeypatch.setenv("FAKE_FAIL", "seed2")
    assert _cli(["sweep", *sel, "--root", "/data", "--command", cmd]) == 1
    text = capsys.readouterr().out
    assert "FAILED" in text and "fake failure" in text and "BLOCKED" in text
    assert _cli(["status", *sel]) == 1
    text = capsys.readouterr().out
    assert "failed" in text and "1 of 2 cell(s) complete" in text
    monkeypatch.delenv("FAKE_FAIL")
    assert _cli(["sweep", *sel, "--root", "/data", "--command", cmd]) == 0
    assert _cli(["status", *sel]) == 0
    capsys.readouterr()
    assert _cli(["status", "--output", out]) == 1  # the whole protocol: other datasets, seed 3 missing
    assert "2 of 33 cell(s) complete" in capsys.readouterr().out
    assert _cli(["status", *sel, "--opts", "OPTIM.MAX_EPOCH", "2"]) == 1
    assert "stale" in capsys.readouterr().out
    script = tmp_path / "s.sbatch"
    assert _cli(["sweep", *sel, "--root", "/data", "--executor", "print", "--script", str(script),
                 "--opts", "OPTIM.MAX_EPOCH", "2", "--command", cmd]) == 0
    text = capsys.readouterr().out
    assert text.count("OPTIM.MAX_EPOCH 2") == 4 and "move it aside" in text
    body = script.read_text()
    assert "#SBATCH --array=0-1%16" in body and "--chain \"$SLURM_ARRAY_TASK_ID\"" in body
    # what one array task runs: chain 1 of the plan, with the sweep's rules
    assert _cli(["sweep", *sel, "--root", "/data", "--opts", "OPTIM.MAX_EPOCH", "2", "--command", cmd,
                 "--chain", "1"]) == 0
    assert "2 reran" in capsys.readouterr().out


def test_without_data_the_demo_runs_instead(out, tmp_path, monkeypatch, capsys):
    import mmrl.demo.world as world
    monkeypatch.delenv("DATA", raising=False)
    monkeypatch.setattr(world, "ensure_demo_dataset", lambda: tmp_path / "cache" / "demo")  # skip generating it
    assert _cli(["sweep", "--protocol", "b2n", "--output", out, "--executor", "print", "--seeds", "1"]) == 0
    text = capsys.readouterr().out
    assert "running the embedded demo dataset" in text
    assert "configs/datasets/demo.yaml" in text and "configs/trainers/MMRL/demo.yaml" in text
    assert _cli(["sweep", "--protocol", "b2n", "--output", out, "--executor", "print", "--datasets", "dtd"]) == 2
    assert "needs the real data" in capsys.readouterr().err
