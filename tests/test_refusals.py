"""What a run refuses, and how: stale or foreign state never ends as a complete (wrong) result,
and every refusal names the file or key and the fix, without a traceback."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from mmrl.engine.run import main as run_main
from engine_helpers import REPO, argv, record, write_eurosat

MODEL = "MultiModalRepresentationLearner"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_eurosat(tmp_path_factory)


@pytest.fixture(scope="module")
def killed_run(data_root, tmp_path_factory):
    """A training of 3 epochs killed after epoch 1 (checkpoint every epoch)."""
    out = tmp_path_factory.mktemp("killed") / "run"
    os.environ["MMRL_FAULT_AFTER_EPOCH"] = "1"
    try:
        assert run_main(killed_argv(data_root, out)) != 0
    finally:
        del os.environ["MMRL_FAULT_AFTER_EPOCH"]
    assert record(out)["status"] == "failed" and (out / MODEL / "resume.pth").is_file()
    return out


@pytest.fixture
def killed(killed_run, tmp_path):
    """A private copy of the killed run (the argv's few-shot dir is beside it, as the original's)."""
    dest = tmp_path / "run"
    shutil.copytree(killed_run, dest)
    return dest


def killed_argv(data_root, out, *named, opts=()):
    return argv(data_root, out, *named, epochs=3, shots=1, opts=["TRAIN.CHECKPOINT_FREQ", "1", *opts])


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


# -- a run directory belongs to one config ------------------------------------------------------

@pytest.mark.slow
def test_resume_under_another_config_is_refused_with_the_changes(data_root, killed, capsys):
    before = record(killed)
    assert run_main(killed_argv(data_root, killed, opts=["OPTIM.LR", "0.002"])) == 3
    err = capsys.readouterr().err
    assert "OPTIM.LR: 0.001 -> 0.002" in err and "unfinished run" in err and "another --output-dir" in err
    assert "Traceback" not in err
    assert record(killed) == before  # nothing written
    # the same config still resumes
    assert run_main(killed_argv(data_root, killed)) == 0
    assert record(killed)["status"] == "complete"


def test_training_state_without_a_record_is_refused(data_root, killed, capsys):
    (killed / "record.json").unlink()
    assert run_main(killed_argv(data_root, killed)) == 3
    err = capsys.readouterr().err
    assert "no record.json" in err and "resume.pth" in err and f"mv {killed}" in err
    assert not (killed / "record.json").exists()


@pytest.mark.slow
def test_failed_start_without_state_may_rerun_under_another_config(data_root, tmp_path):
    out = tmp_path / "run"
    # fails while building the model (an open_clip tag it does not have), before any checkpoint exists
    assert run_main(argv(data_root, out, epochs=1, opts=["MODEL.BACKBONE.NAME", "ViT-B-16:no-such-tag"])) == 1
    assert record(out)["status"] == "failed"
    assert run_main(argv(data_root, out, epochs=1)) == 0
    rec = record(out)
    assert rec["status"] == "complete" and rec["history"][-1]["status"] == "failed"


# -- evaluating an unfinished training ----------------------------------------------------------

def test_eval_of_unfinished_training_is_refused_unless_allowed(data_root, killed, tmp_path, capsys):
    ev = tmp_path / "eval"
    args = killed_argv(data_root, ev, "--eval-only", "--model-dir", str(killed))
    assert run_main(args) == 2
    err = capsys.readouterr().err
    assert "unfinished training" in err and "epoch 1 of 3" in err and "--allow-unfinished" in err
    assert not ev.exists()
    assert run_main([*args[:2], "--allow-unfinished", *args[2:]]) == 0
    rec = record(ev)
    assert rec["status"] == "complete" and rec["checkpoint"]["epoch"] == 1
    assert rec["unfinished_training"] == {"status": "failed", "checkpoint_epoch": 1, "max_epoch": 3,
                                          "allowed_by": "--allow-unfinished"}
    assert rec["identity"]["allow_unfinished"] is True
    # the same evaluation without the flag is another run, not "nothing to do"
    assert run_main(args) != 0


# -- unreadable records --------------------------------------------------------------------------

def test_corrupt_record_is_an_error_that_names_the_file(data_root, killed, capsys):
    (killed / "record.json").write_text('{"status": "compl')
    assert run_main(killed_argv(data_root, killed)) == 2
    err = capsys.readouterr().err
    assert f"{killed / 'record.json'} exists but cannot be read" in err and f"mv {killed}" in err
    assert "Traceback" not in err
    assert (killed / "record.json").read_text() == '{"status": "compl'  # not replaced
    (killed / "record.json").write_text("[1, 2]")
    assert run_main(killed_argv(data_root, killed)) == 2
    assert "is not a run record" in capsys.readouterr().err


def test_corrupt_record_of_the_model_dir_is_named(data_root, killed, tmp_path, capsys):
    (killed / "record.json").write_text("")
    ev = tmp_path / "eval"
    assert run_main(killed_argv(data_root, ev, "--eval-only", "--model-dir", str(killed))) == 2
    assert f"{killed / 'record.json'} exists but cannot be read" in capsys.readouterr().err


# -- files we did not write ----------------------------------------------------------------------

def test_malicious_resume_file_is_refused_without_unsafe_advice(data_root, killed):
    torch.save({"state_dict": {}, "x": Evil()}, killed / MODEL / "resume.pth")
    assert run_main(killed_argv(data_root, killed)) == 1
    err = record(killed)["error"]
    assert f"resume file {killed / MODEL / 'resume.pth'} was not loaded" in err and "posix.system" in err
    assert "weights_only" not in err and f"mv {killed}" in err


def test_foreign_resume_file_is_refused(data_root, killed):
    torch.save({"weights": torch.zeros(2)}, killed / MODEL / "resume.pth")
    assert run_main(killed_argv(data_root, killed)) == 1
    assert "is not one this harness wrote" in record(killed)["error"]


def test_malicious_checkpoint_for_eval_is_refused_without_unsafe_advice(data_root, tmp_path):
    model_dir = tmp_path / "authors_run"
    (model_dir / MODEL).mkdir(parents=True)
    torch.save({"state_dict": {}, "scheduler": Evil()}, model_dir / MODEL / "model.pth.tar-5")
    ev = tmp_path / "eval"
    assert run_main(argv(data_root, ev, "--eval-only", "--model-dir", str(model_dir))) == 1
    err = record(ev)["error"]
    assert "model.pth.tar-5 was not loaded" in err and "weights_only" not in err


def test_no_torch_load_outside_the_one_loader():
    """Every read of a torch file goes through mmrl.utils.torchfile (tests and bench aside)."""
    import ast
    offenders = []
    for path in (REPO / "mmrl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and path.name != "torchfile.py"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


# -- output directory ----------------------------------------------------------------------------

def test_output_dir_that_is_a_file_or_cannot_be_created(data_root, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert run_main(argv(data_root, f, epochs=1)) == 2
    err = capsys.readouterr().err
    assert f"--output-dir {f} is an existing file" in err and "Traceback" not in err
    assert run_main(argv(data_root, f / "run", epochs=1)) == 2
    err = capsys.readouterr().err
    assert f"cannot create the run directory {f / 'run'}" in err and "Traceback" not in err


def test_output_dir_not_writable(data_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(out) else real(p, mode))
    assert run_main(argv(data_root, out, epochs=1)) == 2
    assert f"the run directory {out} is not writable" in capsys.readouterr().err


# -- options that would be ignored ---------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["tiny-test", "demo-tiny", "random:ViT-B-32"])
def test_weights_file_with_a_backbone_that_takes_none_is_refused(data_root, tmp_path, capsys, backbone):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    out = tmp_path / "run"
    assert run_main(argv(data_root, out, epochs=1, opts=["MODEL.BACKBONE.NAME", backbone,
                                                         "MODEL.BACKBONE.WEIGHTS", str(weights)])) == 2
    err = capsys.readouterr().err
    assert "MODEL.BACKBONE.WEIGHTS" in err and f"{backbone!r} does not take a weights file" in err
    assert not out.exists()


def test_train_epoch_zero_and_empty_flags_are_refused(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(argv(data_root, out, "--train-epoch", "0", epochs=None)) == 2
    assert "OPTIM.MAX_EPOCH must be >= 1; got 0 (set by cli --train-epoch)" in capsys.readouterr().err
    a = argv(data_root, out, epochs=1)
    a[a.index("--output-dir") + 1] = ""
    assert run_main(a) == 2
    assert "--output-dir was given an empty value" in capsys.readouterr().err
    a = argv(data_root, out, epochs=1)
    a[a.index("--root") + 1] = ""
    assert run_main(a) == 2
    assert "--root was given an empty value" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_train_epoch_is_applied(data_root, tmp_path):
    out = tmp_path / "run"
    assert run_main(argv(data_root, out, "--train-epoch", "1", epochs=None)) == 0
    assert record(out)["config"]["OPTIM"]["MAX_EPOCH"] == 1


@pytest.mark.parametrize("key,value", [("OPTIM.NAME", "rmsprop"), ("OPTIM.LR_SCHEDULER", "single_step"),
                                       ("OPTIM.WARMUP_TYPE", "linear"), ("TEST.SPLIT", "val"),
                                       ("TEST.FINAL_MODEL", "best_val"), ("INPUT.INTERPOLATION", "lanczos")])
def test_unsupported_enumerated_values_are_refused_before_loading(data_root, tmp_path, capsys, key, value):
    out = tmp_path / "run"
    assert run_main(argv(data_root, out, epochs=1, opts=[key, value])) == 2
    err = capsys.readouterr().err
    assert f"{key} = {value!r} (set by cli opts) is not supported" in err and "allowed:" in err
    assert not out.exists()


# -- dataset root --------------------------------------------------------------------------------

def test_missing_root_is_refused_whatever_the_dataset(tmp_path, capsys):
    for stem in ("eurosat", "demo"):
        out = tmp_path / stem
        a = ["--root", str(tmp_path / "nope"), "--trainer", "ZeroshotCLIP", "--eval-only",
             "--dataset-config-file", str(REPO / f"configs/datasets/{stem}.yaml"),
             "--config-file", str(REPO / "configs/trainers/MMRL/demo.yaml"), "--output-dir", str(out), "TASK", "B2N"]
        assert run_main(a) == 2
        err = capsys.readouterr().err
        assert f"--root {tmp_path / 'nope'} is not a folder" in err and not out.exists()


def test_demo_only_without_root(tmp_path, caplog):
    import logging

    from mmrl.datasets import build_dataset
    from mmrl.errors import DatasetError
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="split_zhou_Demo.json not found.*Leave --root out"):
        build_dataset("Demo", tmp_path / "empty")
    with pytest.raises(DatasetError, match="DATASET.ROOT is not set"):
        build_dataset("EuroSAT", "")
    caplog.set_level(logging.INFO, logger="mmrl.data")
    assert build_dataset("Demo", "").name == "Demo"
    assert "no DATASET.ROOT given, using the built-in demo dataset" in caplog.text


# -- pipes ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("entry", [["-m", "mmrl", "explain"], [str(REPO / "train.py"), "--no-train"]])
def test_closed_stdout_is_not_a_traceback(tmp_path, entry):
    read, write = os.pipe()
    os.close(read)  # the reader (`head`) is gone before the first line
    args = ["--trainer", "MMRL", "--config-file", str(REPO / "configs/trainers/MMRL/demo.yaml"),
            "--dataset-config-file", str(REPO / "configs/datasets/demo.yaml"),
            "--output-dir", str(tmp_path / "run"), "TASK", "B2N"]
    if entry[-1] == "--no-train":  # a complete run prints "nothing to do" to stdout
        (tmp_path / "run").mkdir()
        from mmrl.config import config_hash, resolve_config
        from mmrl.engine.args import parse_run_args
        from mmrl.engine.rundir import run_identity, write_record
        ra = parse_run_args(["--no-train", *args])
        write_record(tmp_path / "run", {"status": "complete",
                                        "config_hash": config_hash(resolve_config(ra).cfg, run_identity(ra))})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, *entry, *args], stdout=write, stderr=subprocess.PIPE, text=True, env=env,
                       cwd=tmp_path, timeout=120)
    os.close(write)
    assert "Traceback" not in p.stderr and "BrokenPipeError" not in p.stderr, p.stderr
    assert p.returncode == 141


def test_records_written_by_us_round_trip(tmp_path):
    from mmrl.engine.rundir import read_record
    assert read_record(tmp_path) is None
    (tmp_path / "record.json").write_text(json.dumps({"status": "complete"}))
    assert read_record(tmp_path) == {"status": "complete"}


@pytest.mark.slow
def test_complete_eval_of_a_checkpoint_that_changed_since_is_not_nothing_to_do(data_root, tmp_path, capsys):
    train = tmp_path / "train"
    assert run_main(argv(data_root, train, epochs=1)) == 0
    ev = tmp_path / "eval"
    args = argv(data_root, ev, "--eval-only", "--model-dir", str(train), epochs=1, subsample="new")
    assert run_main(args) == 0
    assert run_main(args) == 0 and "nothing to do" in capsys.readouterr().out
    ck = train / MODEL / "model.pth.tar-1"
    state = torch.load(ck, weights_only=True)
    for v in state["state_dict"].values():
        v.add_(1.0)
    torch.save(state, ck)  # as if the training had been rerun
    before = record(ev)
    assert run_main(args) == 3
    err = capsys.readouterr().err
    assert "complete evaluation of another checkpoint" in err and "training was rerun since" in err
    assert record(ev) == before


def test_no_train_run_is_not_the_trained_run(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(argv(data_root, out, "--no-train", epochs=1)) == 0
    assert record(out)["identity"]["no_train"] is True
    assert run_main(argv(data_root, out, epochs=1)) == 3  # not "nothing to do"
    assert "--no-train: True -> None" in capsys.readouterr().err


def test_record_from_a_newer_schema_is_refused(tmp_path):
    from mmrl.engine.rundir import read_record
    from mmrl.errors import RecordError
    (tmp_path / "record.json").write_text(json.dumps({"schema": 99, "status": "complete"}))
    with pytest.raises(RecordError, match="schema 99"):
        read_record(tmp_path)


def test_one_lock_per_run_held_by_a_sweep_is_adopted_by_its_train_py(data_root, tmp_path, monkeypatch, capsys):
    """A run whose lock another process holds is refused (exit 4); the process the holder
    starts with the lock handed down (a sweep's train.py) adopts it, and leaves it held."""
    from mmrl.engine.rundir import RunLock, handoff_env, is_locked
    out = tmp_path / "run"
    held = RunLock(out)
    assert held.acquire()
    try:
        assert run_main(argv(data_root, out, "--no-train", epochs=1)) == 4
        assert "another process is running" in capsys.readouterr().err and not (out / "record.json").exists()
        monkeypatch.setenv(*handoff_env([held]).popitem())
        assert run_main(argv(data_root, out, "--no-train", epochs=1)) == 0
        assert record(out)["status"] == "complete" and is_locked(out)
    finally:
        held.release()
    assert not is_locked(out) and sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "fewshot", "run"]


def test_lock_path_taken_by_something_else_is_named(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    from mmrl.engine.rundir import lock_path
    lock_path(out).mkdir(parents=True)
    assert run_main(argv(data_root, out, epochs=1)) == 2
    err = capsys.readouterr().err
    assert f"cannot open the run's lock file {lock_path(out)}" in err and "Traceback" not in err


def test_unreadable_yaml_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00 not utf-8")
    a = ["--trainer", "MMRL", "--config-file", str(bad), "--output-dir", str(tmp_path / "run"), "TASK", "B2N"]
    assert run_main(a) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not a readable YAML file" in err and "Traceback" not in err


def test_eval_many_jobs_file_and_missing_paths_are_named(tmp_path, capsys):
    from mmrl.cli import main as cli_main
    jobs = tmp_path / "jobs.json"
    jobs.write_text('{"not": "a list"}')
    assert cli_main(["eval-many", str(jobs)]) == 2
    assert "expected a JSON list of train.py argument lists" in capsys.readouterr().err
    assert cli_main(["eval-many", str(tmp_path / "missing.json")]) == 2
    assert "missing.json cannot be read as JSON" in capsys.readouterr().err


def test_table_save_to_a_folder_is_named(tmp_path, capsys):
    from mmrl.cli import main as cli_main
    from mmrl.engine.rundir import write_record
    from mmrl.sweep.plan import expand
    out = str(tmp_path / "output")
    for job in expand("b2n", trainers=["MMRL"], datasets=["eurosat"], seeds=[1], root="", output=out):
        write_record(job.run_dir, {"status": "complete", "config_hash": "x", "metrics": {"accuracy": 50.0}})
    (tmp_path / "dir").mkdir()
    assert cli_main(["table", "--protocol", "b2n", "--output", out, "--seeds", "1", "--save",
                     str(tmp_path / "dir")]) == 2
    err = capsys.readouterr().err
    assert "Is a directory" in err and str(tmp_path / "dir") in err


@pytest.mark.usefixtures("tiny_weights_pass_as_openai")
def test_eval_on_other_backbone_weights_than_the_training_is_refused(data_root, tmp_path, capsys):
    """MODEL.BACKBONE.WEIGHTS is a path: the eval's file may hold other weights than the training's
    (the learned tensors fit any file of the architecture). The records' SHA-256s tell."""
    from mmrl.clip.backbone import load_backbone
    clip = load_backbone("tiny-test")[0]
    files = {}
    for name, shift in (("a", 0.0), ("b", 0.01)):
        files[name] = tmp_path / f"{name}.pt"
        torch.save({k: v + shift if v.is_floating_point() else v for k, v in clip.state_dict().items()}, files[name])

    def with_weights(out, name, *named, **kw):
        return argv(data_root, out, *named, epochs=1, opts=["MODEL.BACKBONE.NAME", "ViT-B/16",
                                                            "MODEL.BACKBONE.WEIGHTS", str(files[name])], **kw)
    train = tmp_path / "train"
    assert run_main(with_weights(train, "a")) == 0
    assert run_main(with_weights(tmp_path / "ev_a", "a", "--eval-only", "--model-dir", str(train),
                                 subsample="new")) == 0
    capsys.readouterr()
    ev = tmp_path / "ev_b"
    assert run_main(with_weights(ev, "b", "--eval-only", "--model-dir", str(train), subsample="new")) == 1
    rec = record(ev)
    assert rec["status"] == "failed" and rec["metrics"] is None
    assert str(files["b"]) in rec["error"] and str(files["a"]) in rec["error"] and "MODEL.BACKBONE.WEIGHTS" in rec["error"]


@pytest.mark.usefixtures("tiny_weights_pass_as_openai")
def test_resume_after_the_weights_file_changed_is_refused(data_root, tmp_path, monkeypatch):
    from mmrl.clip import backbone
    clip = backbone.load_backbone("tiny-test")[0]
    weights = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), weights)
    out = tmp_path / "run"
    args = killed_argv(data_root, out, opts=["MODEL.BACKBONE.NAME", "ViT-B/16", "MODEL.BACKBONE.WEIGHTS", str(weights)])
    monkeypatch.setenv("MMRL_FAULT_AFTER_EPOCH", "1")
    assert run_main(args) != 0 and (out / MODEL / "resume.pth").is_file()
    monkeypatch.delenv("MMRL_FAULT_AFTER_EPOCH")
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in clip.state_dict().items()}, weights)
    monkeypatch.setattr(backbone, "_SHARED", {})  # a new process: the file is read again
    assert run_main(args) == 1
    rec = record(out)
    assert rec["status"] == "failed" and "resume.pth was trained on backbone weights" in rec["error"]
    assert str(weights) in rec["error"]
    assert not (out / MODEL / "model.pth.tar-3").exists()


@pytest.mark.usefixtures("tiny_weights_pass_as_openai")
def test_resume_refused_for_changed_weights_stays_refused_until_the_file_is_back(data_root, tmp_path, monkeypatch):
    from mmrl.clip import backbone
    clip = backbone.load_backbone("tiny-test")[0]
    weights = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), weights)
    original = weights.read_bytes()
    out = tmp_path / "run"
    args = killed_argv(data_root, out, opts=["MODEL.BACKBONE.NAME", "ViT-B/16", "MODEL.BACKBONE.WEIGHTS", str(weights)])
    monkeypatch.setenv("MMRL_FAULT_AFTER_EPOCH", "1")
    assert run_main(args) != 0
    monkeypatch.delenv("MMRL_FAULT_AFTER_EPOCH")
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in clip.state_dict().items()}, weights)
    for _ in range(2):  # the refused attempt's record must not make the changed file the run's own
        monkeypatch.setattr(backbone, "_SHARED", {})
        assert run_main(args) == 1 and "resume.pth was trained on backbone weights" in record(out)["error"]
    weights.write_bytes(original)
    monkeypatch.setattr(backbone, "_SHARED", {})
    assert run_main(args) == 0 and record(out)["status"] == "complete"


@pytest.mark.slow
def test_resume_with_another_number_of_loader_workers_is_refused(data_root, killed):
    """DATALOADER.NUM_WORKERS is no part of the config hash (it names resources), yet it changes the
    augmentations (docs/protocol.md): epochs 2-3 under other workers than epoch 1 would be neither
    run's result."""
    assert run_main(killed_argv(data_root, killed, opts=["DATALOADER.NUM_WORKERS", "1"])) == 1
    rec = record(killed)
    assert rec["status"] == "failed" and "resume.pth" in rec["error"]
    assert "DATALOADER.NUM_WORKERS 0" in rec["error"] and "this run has 1" in rec["error"]
    assert not (killed / MODEL / "model.pth.tar-3").exists()
    assert run_main(killed_argv(data_root, killed)) == 0  # the original value resumes
    assert record(killed)["status"] == "complete"
