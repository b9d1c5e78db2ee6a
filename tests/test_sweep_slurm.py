"""The slurm executor through submitit's local executor (same code path, no cluster)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit")

from mmrl.sweep import slurm  # noqa: E402
from mmrl.sweep.plan import chains, expand  # noqa: E402
from mmrl.sweep.runner import CommandRunner  # noqa: E402
from mmrl.sweep.state import inspect  # noqa: E402
from test_sweep_support import SCRIPT  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_chains_run_as_array_tasks_and_requeue_themselves(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    out = str(tmp_path / "output")
    jobs = expand("b2n", trainers=["MMRL"], datasets=["eurosat", "dtd"], seeds=[1], root="/d", output=out)
    groups = chains(jobs)
    runner = CommandRunner(prefix=(sys.executable, SCRIPT), cwd=str(REPO))
    opts = slurm.SlurmOptions(folder=str(tmp_path / "submitit"), cluster="local", parallelism=2, timeout_min=5)
    assert opts.parameters()["slurm_array_parallelism"] == 2
    submitted = slurm.submit(groups, runner, opts)
    outcomes = slurm.wait(submitted, groups)
    assert [o.action for o in outcomes] == ["ran", "ran", "ran", "ran"]
    assert all(inspect(j).state == "complete" for j in jobs)
    # on timeout submitit calls checkpoint(): the same chain is resubmitted (and then skips what is done)
    delayed = slurm.ChainTask().checkpoint(groups[0], runner)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission) and delayed.args[0] == groups[0]
