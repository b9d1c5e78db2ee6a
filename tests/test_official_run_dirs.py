"""`--eval-only --model-dir` on the official Dassl run directories of the baselines: the file in
the method's model folder, read with the restricted unpickler (its optimizer and scheduler are
pickled objects), mapped to our model; PromptSRC's frozen weights taken from the file."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmrl.engine.run import main as run_main
from mmrl.trainers import registry

from engine_helpers import FAST, REPO, write_eurosat
from test_models_coop import tiny_start_embedding

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_eurosat(tmp_path_factory)


def official_run(run_dir, trainer, state_dict):
    folder = Path(run_dir) / registry.get(trainer).model_folder
    folder.mkdir(parents=True)
    # Dassl pickles its warm-up scheduler, whose state holds the cosine scheduler object
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=2e-3)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 5)
    torch.save({"state_dict": state_dict, "epoch": 5, "optimizer": opt.state_dict(),
                "scheduler": {"successor": cosine, "last_epoch": 5}, "val_result": None}, folder / "model.pth.tar-5")
    (folder / "checkpoint").write_text("model.pth.tar-5\n")


def evaluate(root, trainer, model_dir, out):
    from mmrl.sweep.plan import cfg_for
    cfg = REPO / "configs/trainers" / trainer / f"{cfg_for('b2n', trainer, 'eurosat')}.yaml"
    argv = ["--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"), "--config-file", str(cfg),
            "--output-dir", str(out), "--eval-only", "--model-dir", str(model_dir),
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "new", "TASK", "B2N",
            "DATASET.FEWSHOT_DIR", str(Path(out).parent / "fewshot"), "TEST.SAVE_LOGITS", "True", *FAST]
    assert run_main(argv) == 0
    return json.loads((Path(out) / "record.json").read_text()), np.load(Path(out) / "predictions.npz")["logits"]


def test_an_official_coop_run_directory_evaluates_as_our_checkpoint_of_the_same_context(root, tmp_path):
    g = torch.Generator().manual_seed(0)
    ctx = 0.05 * torch.randn(4, 64, generator=g)  # tiny-test's text width; "a photo of a" has 4 words
    official = {"ctx": ctx.half(), "token_prefix": tiny_start_embedding().expand(5, 1, 64).half(),
                "token_suffix": torch.zeros(5, 72, 64).half()}
    official_run(tmp_path / "official", "CoOp", official)
    rec, logits = evaluate(root, "CoOp", tmp_path / "official", tmp_path / "eval_official")
    assert rec["checkpoint"]["path"].endswith("prompt_learner/model.pth.tar-5") and rec["checkpoint"]["epoch"] == 5

    from mmrl.engine import checkpoint as ckpt
    arch = {"trainer": "CoOp", "backbone": "tiny-test", "n_ctx": 4, "ctx_init": "a photo of a", "csc": False,
            "class_token_position": "end"}
    ckpt.save_checkpoint(tmp_path / "ours", folder="prompt_learner", epoch=5, arch=arch,
                         state_dict={"prompt_learner.ctx": ctx.half().float()})
    _, ours = evaluate(root, "CoOp", tmp_path / "ours", tmp_path / "eval_ours")
    np.testing.assert_array_equal(logits, ours)


def test_an_official_promptsrc_run_directory_takes_its_frozen_weights_from_the_file(root, tmp_path):
    from mmrl.clip.backbone import load_backbone
    from mmrl.models.deep_prompts import DeepPromptArch, build_deep_prompt_model
    from test_models_deep_prompts_official import official_state_dict
    clip = load_backbone("tiny-test")[0]
    model = build_deep_prompt_model(DeepPromptArch("PromptSRC", "tiny-test", 4, 4, 9, 9), clip, ["a", "b"])
    pristine = official_state_dict(model)
    official_run(tmp_path / "pristine", "PromptSRC", pristine)
    moved = dict(pristine)
    moved["image_encoder.ln_post.bias"] = pristine["image_encoder.ln_post.bias"] + 0.5  # as GPA moves them
    official_run(tmp_path / "moved", "PromptSRC", moved)
    rec, with_moved = evaluate(root, "PromptSRC", tmp_path / "moved", tmp_path / "eval_moved")
    assert "from the checkpoint" in rec["checkpoint"]["notes"]["frozen_weights"]
    _, with_pristine = evaluate(root, "PromptSRC", tmp_path / "pristine", tmp_path / "eval_pristine")
    assert not np.allclose(with_moved, with_pristine, atol=1e-3)
