"""A reduced demo B2N run: MMRL must beat zero-shot CLIP on base classes without hurting novel ones.

It goes through the real pipeline (demo dataset on disk, loaders, the shipped demo CLIP, the
engine); it fails if learning breaks (e.g. a wrong sign in the loss or frozen tokens)."""
import json
from pathlib import Path

import pytest

from mmrl.engine.run import main as run_main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _argv(out, trainer, subsample, *extra, cfg_trainer=None):
    return ["--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/demo.yaml"),
            "--config-file", str(REPO / f"configs/trainers/{cfg_trainer or trainer}/demo.yaml"),
            "--output-dir", str(out), *extra,
            "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", subsample, "TASK", "B2N",
            "DATASET.FEWSHOT_DIR", str(Path(out).parent / "fewshot")]


def _acc(out):
    return json.loads((Path(out) / "record.json").read_text())["metrics"]["accuracy"]


def test_mmrl_learns_base_and_keeps_novel_on_the_demo(tmp_path):
    zs = {}
    for sub in ("base", "new"):
        out = tmp_path / f"zs_{sub}"
        assert run_main(_argv(out, "ZeroshotCLIP", sub, "--eval-only", cfg_trainer="MMRL")) == 0
        zs[sub] = _acc(out)
    train = tmp_path / "mmrl_base"
    assert run_main(_argv(train, "MMRL", "base", "OPTIM.MAX_EPOCH", "5")) == 0
    new = tmp_path / "mmrl_new"
    assert run_main(_argv(new, "MMRL", "new", "--eval-only", "--model-dir", str(train))) == 0
    assert 30 <= zs["base"] <= 85 and 30 <= zs["new"] <= 85, zs
    assert _acc(train) >= zs["base"] + 5, (_acc(train), zs)
    assert _acc(new) >= zs["new"] - 6, (_acc(new), zs)
