"""bench/step.py: every method that trains has a step benchmark, and the benchmark's fast and
straightforward paths start from the same model and batch (their first-step logits agree)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def load_step_module():
    spec = importlib.util.spec_from_file_location("bench_step", REPO / "bench" / "step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_method_that_trains_has_a_reference_to_bench_against():
    from mmrl.trainers.registry import BUILTIN, methods
    step = load_step_module()
    # the package's own methods (other test modules register plug-in methods, which bring no bench)
    training = [m.name for m in methods() if m.trains and type(m).__module__ in BUILTIN]
    assert len(training) >= 8
    missing = [name for name in training if name not in step.REFERENCES]
    assert not missing, f"add {missing} to REFERENCES in bench/step.py"
    for name in step.REFERENCES:
        assert issubclass(step.reference_class(name), torch.nn.Module)


BASELINES = ["CoOp", "CoCoOp", "KgCoOp", "IVLP", "MaPLe", "PromptSRC"]


@pytest.mark.slow
@pytest.mark.parametrize("trainer", BASELINES)
def test_baseline_step_bench_paths_agree_at_the_first_step(trainer):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "step.py"), "--trainer", trainer, "--case", "eurosat",
                           "--backbone", "tiny-test", "--warmup", "0", "--steps", "1", "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["trainer"] == trainer and out["optim"]["name"] == "sgd"
    assert out["batch"] == min(out["config_batch"], 16 * 5)  # the 5 base classes' 16-shot set caps it
    row = out["rows"][0]
    assert row["max_abs_logit_diff_fast"] < 1e-4
    assert row["loss0_diff_fast"] < 1e-5
    assert row["fast_step_s"] > 0 and row["reference_step_s"] > 0
