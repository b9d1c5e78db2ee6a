"""The engine end to end on a synthetic EuroSAT layout with the tiny backbone."""
import re

import numpy as np
import pytest
import torch

from mmrl.engine.run import main as run_main
from engine_helpers import argv, final_state, make_losses_nan, record, write_eurosat


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_eurosat(tmp_path_factory)


@pytest.mark.slow
def test_train_then_eval_new(data_root, tmp_path):
    out = tmp_path / "train"
    assert run_main(argv(data_root, out)) == 0
    rec = record(out)
    assert rec["status"] == "complete" and rec["mode"] == "train"
    assert rec["params"]["trainable"] > 0 and rec["params"]["total"] > rec["params"]["trainable"]
    assert 0 <= rec["metrics"]["accuracy"] <= 100
    log = (out / "log.txt").read_text()
    # the authors' aggregator: a "=> result" line then the accuracy regex, last block wins
    assert "=> result" in log
    acc = re.findall(r"\* accuracy: ([\.\deE+-]+)%", log)
    assert acc and float(acc[-1]) == round(rec["metrics"]["accuracy"], 1)
    assert re.search(r"^epoch \[1/2\] batch \[5/5\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
                     r"loss \d+\.\d{4} \(\d+\.\d{4}\) acc \d+\.\d{4} \(\d+\.\d{4}\) lr 1\.0000e-03 eta \d+:\d\d:\d\d$",
                     log, re.M), "the last batch of epoch 1 shows the next epoch's lr"
    assert "SUBSAMPLE BASE CLASSES!" in log and "# train_x" in log
    pred = np.load(out / "predictions.npz")
    assert pred["impath"][0].startswith("2750/") and len(pred["label"]) == len(pred["pred"])
    # checkpoint: trainable tensors only, architecture stored, loadable with weights_only
    ck = torch.load(out / "MultiModalRepresentationLearner/model.pth.tar-2", weights_only=True)
    assert set(ck["arch"]) >= {"backbone", "rep_layers", "n_rep_tokens", "rep_dim", "trainer"}
    assert ck["arch"]["rep_dim"] == 2048  # EuroSAT's override
    assert all(k.startswith(("representation_learner.", "image_encoder.")) for k in ck["state_dict"])

    ev = tmp_path / "test_new"
    code = run_main(argv(data_root, ev, "--eval-only", "--model-dir", str(out), subsample="new",
                         opts=["TRAINER.MMRL.REP_DIM", "512", "TEST.SAVE_LOGITS", "True"]))
    assert code == 0
    rec = record(ev)
    assert rec["status"] == "complete" and rec["mode"] == "eval"
    assert rec["checkpoint"]["path"].endswith("model.pth.tar-2") and len(rec["checkpoint"]["sha256"]) == 64
    # built as trained (2048), and the record says the config's 512 was not used
    assert rec["checkpoint"]["notes"]["config_not_used"] == {"rep_dim": {"config": 512, "checkpoint": 2048}}
    pred = np.load(ev / "predictions.npz")
    assert pred["logits"].shape == (len(pred["label"]), 5) and str(pred["head"]) == "class"
    assert not (ev / "MultiModalRepresentationLearner").exists()

    # a finished run is never redone: same command -> nothing to do, files untouched
    before = (out / "log.txt").read_text()
    assert run_main(argv(data_root, out)) == 0
    assert (out / "log.txt").read_text() == before
    # ... and a complete run with another config is refused, not overwritten
    assert run_main(argv(data_root, out, opts=["OPTIM.LR", "0.002"])) == 3
    assert record(out)["config_hash"] == rec_hash(out)


def rec_hash(out):
    return record(out)["config_hash"]


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(data_root, tmp_path, monkeypatch):
    full = tmp_path / "full"
    assert run_main(argv(data_root, full, epochs=3)) == 0
    killed = tmp_path / "killed"
    monkeypatch.setenv("MMRL_FAULT_AFTER_EPOCH", "1")
    assert run_main(argv(data_root, killed, epochs=3)) != 0
    assert record(killed)["status"] == "failed"
    assert (killed / "MultiModalRepresentationLearner/resume.pth").is_file()
    monkeypatch.delenv("MMRL_FAULT_AFTER_EPOCH")
    assert run_main(argv(data_root, killed, epochs=3)) == 0
    rec = record(killed)
    assert rec["status"] == "complete" and rec["history"][-1]["status"] == "failed"
    a, b = final_state(full), final_state(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert rec["metrics"]["accuracy"] == record(full)["metrics"]["accuracy"]
    assert "Found checkpoint at" in (killed / "log.txt").read_text()


def test_eval_only_refuses_without_checkpoint(data_root, tmp_path, capsys):
    empty = tmp_path / "not_trained"
    empty.mkdir()
    out = tmp_path / "ev"
    assert run_main(argv(data_root, out, "--eval-only", "--model-dir", str(empty))) == 2
    assert "no checkpoint found" in capsys.readouterr().err
    assert not out.exists()  # refused before the run directory is made


def test_nan_loss_marks_run_failed(data_root, tmp_path, monkeypatch):
    make_losses_nan(monkeypatch)
    out = tmp_path / "nan"
    assert run_main(argv(data_root, out, epochs=1)) == 1
    rec = record(out)
    assert rec["status"] == "failed" and "loss became nan" in rec["error"] and rec["metrics"] is None
    assert "=> result" not in (out / "log.txt").read_text()


def test_exception_marks_run_failed(data_root, tmp_path, monkeypatch):
    from mmrl.engine import trainer
    monkeypatch.setattr(trainer.Trainer, "build_model", lambda self: (_ for _ in ()).throw(RuntimeError("boom")))
    out = tmp_path / "boom"
    assert run_main(argv(data_root, out, epochs=1)) == 1
    rec = record(out)
    assert rec["status"] == "failed" and "RuntimeError: boom" in rec["error"]


def test_zeroshot_clip_eval(data_root, tmp_path):
    out = tmp_path / "zs"
    args = argv(data_root, out, "--eval-only", trainer="MMRL", subsample="new")
    args[args.index("--trainer") + 1] = "ZeroshotCLIP"
    assert run_main(args) == 0
    rec = record(out)
    assert rec["status"] == "complete" and rec["trainer"] == "ZeroshotCLIP"


@pytest.mark.slow
def test_eval_many_shares_one_pass_and_matches_single_runs(data_root, tmp_path):
    from mmrl.engine.run import main_many
    trains = []
    for seed in (1, 2):
        out = tmp_path / f"train{seed}"
        assert run_main(argv(data_root, out, seed=seed, epochs=1)) == 0
        trains.append(out)
    single = tmp_path / "single_eval1"
    logits = ["TEST.SAVE_LOGITS", "True"]
    assert run_main(argv(data_root, single, "--eval-only", "--model-dir", str(trains[0]), seed=1,
                         subsample="new", opts=logits)) == 0
    evs = [argv(data_root, tmp_path / f"eval{s}", "--eval-only", "--model-dir", str(t), seed=s, subsample="new",
                opts=logits) for s, t in zip((1, 2), trains)]
    assert main_many(evs) == [0, 0]
    for s in (1, 2):
        rec = record(tmp_path / f"eval{s}")
        assert rec["status"] == "complete" and rec["checkpoint"]["path"].startswith(str(trains[s - 1]))
        assert "=> result" in (tmp_path / f"eval{s}" / "log.txt").read_text()
    a, b = np.load(single / "predictions.npz"), np.load(tmp_path / "eval1" / "predictions.npz")
    assert np.array_equal(a["pred"], b["pred"]) and np.array_equal(a["impath"], b["impath"])
    assert np.array_equal(a["logits"], b["logits"]) and a["head"] == b["head"]
    assert record(tmp_path / "eval1")["metrics"]["accuracy"] == record(single)["metrics"]["accuracy"]
    assert main_many(evs) == [0, 0]  # complete runs are not redone


@pytest.mark.slow
def test_a_run_resumed_on_another_device_steps_with_this_devices_optimizer(data_root, tmp_path, monkeypatch):
    """A resume file written on CUDA holds fused, capturable AdamW groups; resumed on the CPU, the
    run steps with the optimiser the CPU builds (torch's load_state_dict would take the writer's
    kernel flags) and ends exactly as the uninterrupted CPU run."""
    full = tmp_path / "full"
    assert run_main(argv(data_root, full, epochs=3)) == 0
    killed = tmp_path / "killed"
    monkeypatch.setenv("MMRL_FAULT_AFTER_EPOCH", "1")
    assert run_main(argv(data_root, killed, epochs=3)) != 0
    monkeypatch.delenv("MMRL_FAULT_AFTER_EPOCH")
    path = killed / "MultiModalRepresentationLearner/resume.pth"
    state = torch.load(path, weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        group.update(fused=True, capturable=True)  # as build_adamw makes it on CUDA
    torch.save(state, path)
    kernels = []
    step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: (
        kernels.append({(g["fused"], g["capturable"]) for g in self.param_groups}), step(self, *a, **k))[1])
    assert run_main(argv(data_root, killed, epochs=3)) == 0
    assert kernels and all(k == {(False, False)} for k in kernels), kernels[:1]  # build_adamw on the CPU
    a, b = final_state(full), final_state(killed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_the_recorded_device_is_the_gpu_only_when_the_run_uses_it(monkeypatch):
    from mmrl.engine.runenv import environment
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake H100")
    assert environment(True)["device"] == "Fake H100"
    on_cpu = environment(False)
    assert on_cpu["device"] != "Fake H100" and on_cpu["cuda_available"] is True
