"""TEST.PREC: evaluation arithmetic is fp32 by default (as the authors' test()), whatever PREC trained."""
import json
from pathlib import Path

import numpy as np
import pytest

from mmrl.config import RunArgs, config_hash, resolve_config
from mmrl.engine.run import main as run_main
from mmrl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from mmrl.datasets.synthetic import write_synthetic_dataset
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset("eurosat", root, n_per_class=20)
    return root


def argv(root, out, *named, opts=()):
    return ["--root", str(root), "--seed", "1", "--trainer", "MMRL",
            "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"),
            "--config-file", str(REPO / "configs/trainers/MMRL/vit_b16.yaml"), "--output-dir", str(out), *named,
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "TASK", "B2N", "OPTIM.MAX_EPOCH", "1",
            "DATASET.FEWSHOT_DIR", str(Path(out).parent / "fewshot"), "MODEL.BACKBONE.NAME", "tiny-test",
            "DATALOADER.NUM_WORKERS", "0", "TEST.SAVE_LOGITS", "True", "TEST.CACHE_DIR", "none", *opts]


def logits(out):
    return np.load(Path(out) / "predictions.npz")["logits"]


def precision(out):
    return json.loads((Path(out) / "record.json").read_text())["precision"]


def test_bf16_training_is_evaluated_in_fp32_unless_asked(data_root, tmp_path):
    train = tmp_path / "train"
    assert run_main(argv(data_root, train, opts=["TRAINER.MMRL.PREC", "bf16"])) == 0
    assert precision(train) == {"requested": "bf16", "used": "bf16", "test_requested": "fp32", "test_used": "fp32"}

    fp32 = tmp_path / "eval_fp32"
    assert run_main(argv(data_root, fp32, "--eval-only", "--model-dir", str(train))) == 0
    # the final evaluation of the bf16 training is the plain fp32 computation, to the bit
    np.testing.assert_array_equal(logits(train), logits(fp32))

    bf16 = tmp_path / "eval_bf16"
    assert run_main(argv(data_root, bf16, "--eval-only", "--model-dir", str(train), opts=["TEST.PREC", "bf16"])) == 0
    assert precision(bf16)["test_used"] == "bf16"
    diff = np.abs(logits(bf16) - logits(fp32))
    assert 0 < diff.max() < 2.0, "bf16 autocast changes the logits, but only by rounding"


def _cfg(*opts):
    return resolve_config(RunArgs(trainer="MMRL", config_file=str(REPO / "configs/trainers/MMRL/vit_b16.yaml"),
                                  dataset_config_file=str(REPO / "configs/datasets/eurosat.yaml"),
                                  opts=["TASK", "B2N", *opts])).cfg


def test_test_prec_is_validated_and_part_of_the_config_identity():
    assert _cfg().TEST.PREC == "fp32"
    assert config_hash(_cfg("TEST.PREC", "amp")) != config_hash(_cfg())
    with pytest.raises(ConfigError, match=r"TEST\.PREC = 'fp16' .*allowed: 'fp32', 'amp', 'bf16'"):
        _cfg("TEST.PREC", "fp16")
