"""Runs SIGKILLed at the points a crash can really hit (around a rename, between files), then rerun:
the rerun ends bit-identical to an uninterrupted run, or refuses clearly; never complete on partial data.

The kill is injected in a child process: ``os.replace`` (every atomic write's last step) sends
SIGKILL to its own process at the Nth rename onto a given file name, before or after the rename.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmrl.engine.run import main as run_main
from engine_helpers import REPO, argv, final_state, record, write_eurosat

MODEL = "MultiModalRepresentationLearner"

CHILD = r"""
import json, os, signal, sys
name, nth, when, entry = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
real, seen = os.replace, [0]

def replace(src, dst, *a, **k):
    hit = os.path.basename(os.fspath(dst)) == name or (name.startswith("*") and os.fspath(dst).endswith(name[1:]))
    seen[0] += hit
    if hit and seen[0] == nth and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, *a, **k)
    if hit and seen[0] == nth and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
from mmrl.engine import run
args = json.loads(sys.stdin.read())
sys.exit(run.main(args) if entry == "main" else max(run.main_many(args)))
"""


def killed_at(args, name: str, nth: int = 1, when: str = "before", entry: str = "main") -> None:
    """Run ``args`` in a child that SIGKILLs itself at the ``nth`` rename onto ``name``."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", CHILD, name, str(nth), when, entry], input=json.dumps(args),
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, f"not killed at {name}#{nth} {when}: rc {p.returncode}\n{p.stderr[-3000:]}"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_eurosat(tmp_path_factory)


@pytest.fixture(scope="module")
def full(data_root, tmp_path_factory):
    """The uninterrupted 2-epoch training (with its test) every killed run is compared with."""
    out = tmp_path_factory.mktemp("full") / "run"
    assert run_main(argv(data_root, out, opts=["TEST.SAVE_LOGITS", "True"])) == 0
    return out


def assert_same_run(a: Path, b: Path) -> None:
    """Same final trainables, predictions and accuracy, bit for bit."""
    sa, sb = final_state(a), final_state(b)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    pa, pb = np.load(a / "predictions.npz"), np.load(b / "predictions.npz")
    assert all(np.array_equal(pa[k], pb[k]) for k in ("impath", "label", "pred", "logits"))
    assert record(a)["metrics"] == record(b)["metrics"]


def no_temp_files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob(".*.tmp"))


# (file renamed onto, which rename, kill before or after it, how often epochs 1 and 2 ran in all):
# in the order a 2-epoch training reaches them. A rerun trains again only the epoch whose end the
# kill interrupted; once the final checkpoint and resume file are written, nothing is trained again.
TRAIN_KILLS = [
    ("resume.pth", 1, "before", (2, 1)),       # epoch 1's resume file written to its temp name, not renamed
    ("model.pth.tar-2", 1, "after", (1, 2)),   # the final checkpoint, before the pointer names it
    ("checkpoint", 1, "after", (1, 2)),        # the final checkpoint named, its resume file not yet written
    ("resume.pth", 2, "after", (1, 1)),        # everything trained, nothing evaluated
    ("predictions.npz", 1, "before", (1, 1)),  # during the final evaluation
    # the resume file goes just before the record says complete (a complete run holds no resume
    # state), so a kill inside the record's write trains again: the same result, more slowly
    ("record.json", 2, "before", (2, 2)),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,nth,when,epochs_run", TRAIN_KILLS)
def test_training_killed_then_rerun_equals_the_uninterrupted_run(data_root, full, tmp_path, name, nth, when,
                                                                 epochs_run):
    out = tmp_path / "run"
    args = argv(data_root, out, opts=["TEST.SAVE_LOGITS", "True"])
    killed_at(args, name, nth, when)
    assert record(out)["status"] == "running"
    assert run_main(args) == 0
    rec = record(out)
    assert rec["status"] == "complete" and rec["history"][-1]["status"] == "running"
    assert_same_run(full, out)
    log = (out / "log.txt").read_text()
    assert tuple(log.count(f"epoch [{e}/2] batch [5/5]") for e in (1, 2)) == epochs_run
    assert no_temp_files(out) == []
