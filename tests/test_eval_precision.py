"""TEST.PREC: evaluation arithmetic is fp32 by default (as the authors' test()), whatever PREC trained."""
import numpy as np
import pytest

from mmrl.config import RunArgs, config_hash, resolve_config
from mmrl.engine.run import main as run_main
from mmrl.errors import ConfigError
from engine_helpers import REPO, argv as engine_argv, logits, record, write_eurosat


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_eurosat(tmp_path_factory)


def argv(root, out, *named, opts=()):
    return engine_argv(root, out, *named, epochs=1, opts=["TEST.SAVE_LOGITS", "True", "TEST.CACHE_DIR", "none", *opts])


@pytest.mark.slow
def test_bf16_training_is_evaluated_in_fp32_unless_asked(data_root, tmp_path):
    train = tmp_path / "train"
    assert run_main(argv(data_root, train, opts=["TRAINER.MMRL.PREC", "bf16"])) == 0
    assert record(train)["precision"] == {"requested": "bf16", "used": "bf16", "test_requested": "fp32", "test_used": "fp32"}

    fp32 = tmp_path / "eval_fp32"
    assert run_main(argv(data_root, fp32, "--eval-only", "--model-dir", str(train))) == 0
    # the final evaluation of the bf16 training is the plain fp32 computation, to the bit
    np.testing.assert_array_equal(logits(train), logits(fp32))

    bf16 = tmp_path / "eval_bf16"
    assert run_main(argv(data_root, bf16, "--eval-only", "--model-dir", str(train), opts=["TEST.PREC", "bf16"])) == 0
    assert record(bf16)["precision"]["test_used"] == "bf16"
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
