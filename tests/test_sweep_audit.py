"""Sweep failure modes: stand-in commands, killed shared evaluations, duplicate runs, array scripts."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mmrl.sweep.executors import run_local
from mmrl.sweep.plan import expand
from mmrl.sweep.runner import CommandRunner
from mmrl.sweep.state import inspect
from test_sweep_support import SCRIPT

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def out(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    for var in ("FAKE_FAIL", "FAKE_CRASH", "FAKE_SLEEP", "FAKE_CALLS", "MMRL_TRAIN_COMMAND"):
        monkeypatch.delenv(var, raising=False)
    return str(tmp_path / "output")


@pytest.mark.slow
def test_a_train_command_without_eval_many_runs_a_cells_evaluations_one_by_one(out, monkeypatch):
    # $MMRL_TRAIN_COMMAND = "python train.py" (or a stand-in script) has no `eval-many` sub-command
    monkeypatch.setenv("MMRL_TRAIN_COMMAND", f"{sys.executable} {SCRIPT}")
    jobs = expand("b2n", trainers=["MMRL"], datasets=["eurosat"], seeds=[1, 2], root="/data", output=out)
    res = run_local(jobs, CommandRunner(cwd=str(REPO)))
    assert [o.action for o in res] == ["ran"] * 4, [(o.job.run_dir, o.detail, o.tail[-3:]) for o in res]
    assert [inspect(j).state for j in jobs] == ["complete"] * 4
