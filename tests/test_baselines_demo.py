"""The six baselines on the embedded demo, through train.py (`mmrl.engine.run.main`): each trains
on the base classes, writes its checkpoint in its own model folder, and that checkpoint gives
the same base accuracy again and evaluates the new classes; the deep-prompt family learns
(base accuracy above zero-shot CLIP's), the text prompts' contexts move off their init phrase;
CoOp and IVLP go through `mmrl sweep` and `mmrl table`; IVLP, MaPLe and PromptSRC killed
mid-training resume to the same final tensors, bit for bit, PromptSRC's Gaussian prompt
aggregate included."""
import csv
import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

from mmrl.clip.backbone import load_backbone
from mmrl.engine.run import main as run_main
from mmrl.models.coop import phrase_embedding
from mmrl.models.gpa import gaussian_weights
from mmrl.trainers import registry

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BASELINES = ["CoOp", "CoCoOp", "KgCoOp", "IVLP", "MaPLe", "PromptSRC"]
DEEP = ["IVLP", "MaPLe", "PromptSRC"]


def _argv(out, trainer, subsample, *named, shots=4, opts=(), cfg_trainer=None):
    return ["--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/demo.yaml"),
            "--config-file", str(REPO / f"configs/trainers/{cfg_trainer or trainer}/demo.yaml"),
            "--output-dir", str(out), *named,
            "DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", subsample, "TASK", "B2N",
            "DATASET.FEWSHOT_DIR", str(Path(out).parent / "fewshot"), *opts]


def _record(out):
    return json.loads((Path(out) / "record.json").read_text())


def _checkpoint(out, trainer):
    folder = Path(out) / registry.get(trainer).model_folder
    return torch.load(folder / (folder / "checkpoint").read_text().strip(), weights_only=True)


@pytest.fixture(scope="module")
def zeroshot_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("zs") / "base"
    assert run_main(_argv(out, "ZeroshotCLIP", "base", "--eval-only", cfg_trainer="MMRL")) == 0
    return _record(out)["metrics"]["accuracy"]


# epochs per method: the deep prompts need a few to move clearly past zero-shot on 4 shots
EPOCHS = {"CoOp": 2, "CoCoOp": 2, "KgCoOp": 2, "IVLP": 4, "MaPLe": 4, "PromptSRC": 4}


@pytest.mark.parametrize("trainer", BASELINES)
def test_baseline_trains_and_evaluates_on_the_demo(trainer, zeroshot_base, tmp_path):
    epochs = EPOCHS[trainer]
    train = tmp_path / "train_base"
    assert run_main(_argv(train, trainer, "base", opts=["OPTIM.MAX_EPOCH", str(epochs)])) == 0
    rec = _record(train)
    assert rec["status"] == "complete" and rec["trainer"] == trainer
    ck = _checkpoint(train, trainer)
    assert ck["epoch"] == epochs and ck["arch"]["trainer"] == trainer
    assert (train / registry.get(trainer).model_folder / f"model.pth.tar-{epochs}").is_file()
    assert not (train / registry.get(trainer).model_folder / "resume.pth").exists()
    base = rec["metrics"]["accuracy"]
    if trainer in DEEP:
        assert base >= zeroshot_base + 5, (base, zeroshot_base)
    else:  # two epochs on 4 shots leave a text prompt near zero-shot, but its context has moved
        assert base >= zeroshot_base - 10, (base, zeroshot_base)
        init = phrase_embedding(load_backbone("demo-tiny")[0], "a photo of a", 4)
        assert (ck["state_dict"]["prompt_learner.ctx"] - init).abs().max() > 1e-3

    # the checkpoint alone gives the training's final base accuracy back, then the new classes
    again = tmp_path / "test_base"
    assert run_main(_argv(again, trainer, "base", "--eval-only", "--model-dir", str(train))) == 0
    assert _record(again)["metrics"]["accuracy"] == base
    new = tmp_path / "test_new"
    assert run_main(_argv(new, trainer, "new", "--eval-only", "--model-dir", str(train))) == 0
    rec_new = _record(new)
    assert rec_new["status"] == "complete" and rec_new["checkpoint"]["path"].endswith(f"model.pth.tar-{epochs}")
    assert 20 <= rec_new["metrics"]["accuracy"] <= 100
    assert not (new / registry.get(trainer).model_folder).exists()


# PromptSRC: the Gaussian weights spread over all three epochs (mean 2, std 1), so the epoch
# before the kill weighs in the final aggregate and a lost running sum changes it
GPA = ["TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1"]


@pytest.mark.parametrize("trainer", DEEP)
def test_deep_prompts_killed_mid_training_resume_bit_identical(trainer, tmp_path, monkeypatch):
    opts = ["OPTIM.MAX_EPOCH", "3", "TEST.NO_TEST", "True", *(GPA if trainer == "PromptSRC" else [])]
    full = tmp_path / "full"
    assert run_main(_argv(full, trainer, "base", opts=opts)) == 0
    killed = tmp_path / "killed"
    monkeypatch.setenv("MMRL_FAULT_AFTER_EPOCH", "1")
    assert run_main(_argv(killed, trainer, "base", opts=opts)) != 0
    monkeypatch.delenv("MMRL_FAULT_AFTER_EPOCH")
    resume = killed / registry.get(trainer).model_folder / "resume.pth"
    assert _record(killed)["status"] == "failed" and resume.is_file()
    state = torch.load(resume, weights_only=True)
    assert state["epoch"] == 1
    if trainer == "PromptSRC":  # after epoch 1 the running sum is g(1) times epoch 1's tensors
        gpa = state["epoch_hook"]
        assert gpa["epochs_done"] == 1
        w1 = gaussian_weights(2.0, 1.0, 3)[0]
        assert gpa["sum"].keys() == state["state_dict"].keys()
        for k, v in state["state_dict"].items():
            assert torch.equal(gpa["sum"][k], v * w1), k
    else:
        assert state["epoch_hook"] is None

    assert run_main(_argv(killed, trainer, "base", opts=opts)) == 0
    rec = _record(killed)
    assert rec["status"] == "complete" and rec["history"][-1]["status"] == "failed"
    assert "Found checkpoint at" in (killed / "log.txt").read_text()
    a, b = _checkpoint(full, trainer)["state_dict"], _checkpoint(killed, trainer)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_promptsrc_resume_needs_the_aggregate_from_the_resume_file(tmp_path, monkeypatch):
    """Resumed with the epoch-1 running sum zeroed, the final aggregate differs: the saved
    aggregate is what the resumed run continues from (not something recomputed)."""
    opts = ["OPTIM.MAX_EPOCH", "3", "TEST.NO_TEST", "True", *GPA]
    full = tmp_path / "full"
    assert run_main(_argv(full, "PromptSRC", "base", opts=opts)) == 0
    killed = tmp_path / "killed"
    monkeypatch.setenv("MMRL_FAULT_AFTER_EPOCH", "1")
    assert run_main(_argv(killed, "PromptSRC", "base", opts=opts)) != 0
    monkeypatch.delenv("MMRL_FAULT_AFTER_EPOCH")
    resume = killed / "VLPromptLearner" / "resume.pth"
    state = torch.load(resume, weights_only=True)
    state["epoch_hook"]["sum"] = {k: torch.zeros_like(v) for k, v in state["epoch_hook"]["sum"].items()}
    torch.save(state, resume)
    assert run_main(_argv(killed, "PromptSRC", "base", opts=opts)) == 0
    a, b = _checkpoint(full, "PromptSRC")["state_dict"], _checkpoint(killed, "PromptSRC")["state_dict"]
    w1 = gaussian_weights(2.0, 1.0, 3)[0]
    # the only difference is epoch 1's weighted tensors
    differs = [k for k in a if not torch.equal(a[k], b[k])]
    assert differs
    assert all(torch.allclose(a[k] - b[k], w1 * state["state_dict"][k], atol=1e-6) for k in a)


def test_sweep_and_table_with_a_text_and_a_deep_prompt_baseline(tmp_path, monkeypatch):
    from mmrl.cli import main as cli_main
    monkeypatch.setenv("MMRL_TRAIN_COMMAND", f"{sys.executable} {REPO / 'train.py'}")
    monkeypatch.delenv("DATA", raising=False)
    output = tmp_path / "sweep"
    assert cli_main(["sweep", "--protocol", "b2n", "--trainers", "ZeroshotCLIP", "CoOp", "IVLP",
                     "--datasets", "demo", "--seeds", "1", "--output", str(output),
                     "--opts", "OPTIM.MAX_EPOCH", "2"]) == 0
    for trainer in ("CoOp", "IVLP"):
        train = output / f"base2new/train_base/demo/shots_16/{trainer}/demo/seed1"
        assert (train / registry.get(trainer).model_folder / "model.pth.tar-2").is_file()
        rec = _record(output / f"base2new/test_new/demo/shots_16/{trainer}/demo/seed1")
        assert rec["status"] == "complete" and rec["trainer"] == trainer
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli_main(["table", "--protocol", "b2n", "--output", str(output), "--seeds", "1",
                         "--format", "csv"]) == 0
    text = buf.getvalue()
    rows = {r["trainer"]: r for r in csv.DictReader(io.StringIO(text)) if r["dataset"] == "Demo"}
    for trainer in ("ZeroshotCLIP", "CoOp", "IVLP"):
        m = registry.get(trainer)
        assert m.name in rows or m.display in rows, text
    # the table's numbers are the runs' own (one seed: the records' accuracies)
    for trainer in ("CoOp", "IVLP"):
        base = _record(output / f"base2new/train_base/demo/shots_16/{trainer}/demo/seed1")["metrics"]["accuracy"]
        novel = _record(output / f"base2new/test_new/demo/shots_16/{trainer}/demo/seed1")["metrics"]["accuracy"]
        row = rows.get(trainer) or rows[registry.get(trainer).display]
        assert float(row["base"]) == pytest.approx(base, abs=1e-3), (trainer, row)
        assert float(row["novel"]) == pytest.approx(novel, abs=1e-3), (trainer, row)
