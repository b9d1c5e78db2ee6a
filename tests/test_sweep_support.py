"""A fake engine for the sweep tests (no tests here): writes what a real run writes, fast.

Run in-process through :class:`FakeRunner` or as a script (``python test_sweep_support.py
<train.py argv>``).  Behaviour is steered by environment variables:
    FAKE_FAIL=<substring>   runs whose output dir contains it fail (record "failed", exit 1)
    FAKE_CRASH=<substring>  runs whose output dir contains it die without writing a record
    FAKE_SLEEP=<seconds>    sleep before finishing (lock / concurrency tests)
    FAKE_CALLS=<file>       append "<output dir> <CUDA_VISIBLE_DEVICES>" per call
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from mmrl.engine.args import parse_run_args
from mmrl.engine.rundir import expected_hash, write_record

MODEL = "MultiModalRepresentationLearner"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def out(tmp_path, monkeypatch):
    """A sweep's output folder, run from the repository with none of the stand-in's switches set."""
    monkeypatch.chdir(REPO)
    for var in ("FAKE_FAIL", "FAKE_CRASH", "FAKE_SLEEP", "FAKE_CALLS", "MMRL_TRAIN_COMMAND"):
        monkeypatch.delenv(var, raising=False)
    return str(tmp_path / "output")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_main(argv: list[str], env: dict | None = None) -> int:
    env = {**os.environ, **(env or {})}
    args = parse_run_args(list(argv))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if env.get("FAKE_CALLS"):
        with open(env["FAKE_CALLS"], "a") as f:
            f.write(f"{out} {env.get('CUDA_VISIBLE_DEVICES', '-')}\n")
    if env.get("FAKE_CRASH") and env["FAKE_CRASH"] in str(out):
        print("Traceback: fake crash before the record", file=sys.stderr)
        return 3
    started = datetime.now().isoformat()
    rec = {"schema": 1, "status": "running", "config_hash": expected_hash(args), "output_dir": str(out),
           "trainer": args.trainer, "seed": args.seed, "timings": {"started": started}}
    write_record(out, rec)
    if env.get("FAKE_SLEEP"):
        time.sleep(float(env["FAKE_SLEEP"]))
    if env.get("FAKE_FAIL") and env["FAKE_FAIL"] in str(out):
        rec.update(status="failed", error="RunError: fake failure")
        write_record(out, rec)
        print("Traceback (most recent call last):\nRunError: fake failure", file=sys.stderr)
        return 1
    if args.eval_only and args.model_dir:
        folder = Path(args.model_dir) / MODEL
        ck = folder / (folder / "checkpoint").read_text().strip()
        rec["checkpoint"] = {"path": str(ck), "sha256": _sha(ck)}
    elif not args.eval_only:
        folder = out / MODEL
        folder.mkdir(exist_ok=True)
        ck = folder / "model.pth.tar-1"
        ck.write_bytes(os.urandom(64))  # a new training gives a new checkpoint
        (folder / "checkpoint").write_text(ck.name + "\n")
    acc = 50.0 + (args.seed or 0)
    with open(out / "log.txt", "a") as f:
        f.write(f"=> result\n* total: 100\n* correct: {int(acc)}\n* accuracy: {acc:.1f}%\n"
                f"* error: {100 - acc:.1f}%\n* macro_f1: {acc:.1f}%\n")
    rec.update(status="complete", metrics={"accuracy": acc, "error": 100 - acc, "macro_f1": acc},
               timings={"started": started, "finished": datetime.now().isoformat()})
    write_record(out, rec)
    return 0


@dataclass(frozen=True)
class FakeRunner:
    """In-process runner with the sweep's runner signature (picklable for submitit)."""

    def __call__(self, job, env, console) -> int:
        return fake_main(list(job.argv), env)


SCRIPT = str(Path(__file__).resolve())

if __name__ == "__main__":
    sys.exit(fake_main(sys.argv[1:]))
