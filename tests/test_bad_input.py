"""Misused command lines and config files: each is refused before a run starts, with a message
that names the file, key or value and the fix (no traceback, no silently ignored value)."""
import json
import re
from pathlib import Path

import pytest

from mmrl.config import RunArgs, resolve_config
from mmrl.engine.args import parse_run_args
from mmrl.engine.run import main as run_main
from mmrl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
DATASET_YAML = str(REPO / "configs/datasets/eurosat.yaml")
MMRL_YAML = str(REPO / "configs/trainers/MMRL/vit_b16.yaml")


def args(dataset=DATASET_YAML, config=MMRL_YAML, trainer="MMRL", opts=()):
    return RunArgs(trainer=trainer, seed=1, dataset_config_file=dataset, config_file=config,
                   opts=["TASK", "B2N", *opts])


def test_trainer_yaml_as_dataset_config_is_named():
    with pytest.raises(ConfigError, match=r"vit_b16\.yaml.*DATASET\.NAME.*configs/datasets"):
        resolve_config(args(dataset=MMRL_YAML))


def test_dataset_yaml_as_trainer_config_is_named():
    with pytest.raises(ConfigError, match=r"--config-file .*eurosat\.yaml.*dataset YAML"):
        resolve_config(args(config=DATASET_YAML))


def test_another_methods_config_file_is_named():
    coop = str(REPO / "configs/trainers/CoOp/vit_b16.yaml")
    with pytest.raises(ConfigError, match=r"CoOp/vit_b16\.yaml.*CoOp.*--trainer MMRL.*configs/trainers/MMRL"):
        resolve_config(args(config=coop))


def test_zero_shot_may_take_another_methods_input_settings():
    coop = str(REPO / "configs/trainers/CoOp/vit_b16.yaml")
    assert resolve_config(args(config=coop, trainer="ZeroshotCLIP")).cfg.TRAINER.NAME == "ZeroshotCLIP"


def test_method_without_its_required_block_is_refused():
    with pytest.raises(ConfigError, match=r"TRAINER\.MMRL\.REP_LAYERS.*--config-file"):
        resolve_config(RunArgs(trainer="MMRL", dataset_config_file=DATASET_YAML, opts=["TASK", "B2N"]))


@pytest.mark.parametrize("text, what", [("", "no config keys"), ("# only a comment\n", "no config keys"),
                                        ("OPTIM:\n  LR: 0.1\n  LR: 0.2\n", r"'LR' is given twice.*line 3")])
def test_empty_or_duplicated_yaml_is_named(tmp_path, text, what):
    p = tmp_path / "t.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=rf"(?s){p}.*{what}"):
        resolve_config(args(config=str(p)))


def test_dataset_name_unknown_is_refused_before_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(["--trainer", "MMRL", "--dataset-config-file", DATASET_YAML, "--config-file", MMRL_YAML,
                     "--output-dir", str(out), "TASK", "B2N", "DATASET.NAME", "Foo"]) == 2
    assert re.search(r"DATASET\.NAME 'Foo' \(set by cli opts\).*Food101", capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("key, value", [("OPTIM.LR", "-1.0"), ("OPTIM.LR", "0.0"), ("DATALOADER.NUM_WORKERS", "-1"),
                                        ("TRAIN.PRINT_FREQ", "0"), ("INPUT.PIXEL_MEAN", "[0.5, 0.5]"),
                                        ("INPUT.PIXEL_STD", "[0.5, 0.0, 0.5]")])
def test_out_of_range_values_are_refused_with_the_key(key, value):
    with pytest.raises(ConfigError, match=re.escape(key) + ".*set by cli opts"):
        resolve_config(args(opts=(key, value)))


def test_load_epoch_without_eval_only_is_refused():
    with pytest.raises(ConfigError, match="--load-epoch.*--eval-only"):
        parse_run_args(["--trainer", "MMRL", "--load-epoch", "3"])


def test_run_without_trainer_is_refused_before_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code = run_main(["--dataset-config-file", DATASET_YAML, "--config-file", MMRL_YAML, "--output-dir", str(out),
                     "TASK", "B2N"])
    assert code == 2 and not out.exists()
    assert "--trainer" in capsys.readouterr().err


@pytest.mark.parametrize("fields, what", [({"metrics": "x"}, "'metrics' is a str"),
                                          ({"metrics": {"accuracy": "high"}}, "'metrics.accuracy' is 'high'"),
                                          ({"config": [1]}, "'config' is a list")])
def test_record_of_the_wrong_shape_is_named_not_a_traceback(tmp_path, capsys, fields, what):
    from mmrl.cli import main as cli_main
    for role in ("train_base", "test_new"):
        run = tmp_path / "base2new" / role / "eurosat" / "shots_16" / "MMRL" / "vit_b16" / "seed1"
        run.mkdir(parents=True)
        (run / "record.json").write_text(json.dumps({"status": "complete", "schema": 1, **fields}))
    assert cli_main(["table", "--protocol", "b2n", "--output", str(tmp_path), "--seeds", "1", "--trainer",
                     "MMRL", "--datasets", "eurosat"]) == 2
    err = capsys.readouterr().err
    assert str(run / "record.json") in err and what in err
    cli_main(["status", "--protocol", "b2n", "--output", str(tmp_path), "--trainer", "MMRL", "--datasets", "eurosat"])
    assert "MMRL       eurosat         16       1  failed" in capsys.readouterr().out


def test_plot_names_the_records_it_could_not_read(tmp_path, capsys):
    from mmrl.cli import main as cli_main
    run = tmp_path / "base2new" / "train_base" / "eurosat" / "shots_16" / "MMRL" / "vit_b16" / "seed1"
    run.mkdir(parents=True)
    (run / "record.json").write_text("{oops")
    assert cli_main(["plot", "--protocol", "b2n", "--out", str(tmp_path / "png"), "--output", str(tmp_path),
                     "--trainer", "MMRL", "--datasets", "eurosat"]) == 0
    out = capsys.readouterr().out
    assert f"{run / 'record.json'} exists but cannot be read" in out


@pytest.mark.parametrize("extra, what", [
    (["--seeds", "-1"], "--seeds -1.*seeds >= 0"),
    (["--protocol", "fs", "--shots", "0"], "--shots 0.*K >= 1"),
    (["--shots", "4"], "--shots applies to --protocol fs only"),
    (["--opts", "OPTIM.LRR", "1"], "--opts OPTIM.LRR 1: unknown config key 'OPTIM.LRR'. Did you mean OPTIM.LR"),
    (["--opts", "OPTIM.LR", "abc"], "--opts OPTIM.LR abc: OPTIM.LR must be of type float"),
    (["--opts", "DATASET.NUM_SHOTS", "2"], r"--opts DATASET.NUM_SHOTS: the sweep sets .*use --shots"),
    (["--opts", "OPTIM.MAX_EPOCH", "1", "seed", "4"], r"--opts seed: the sweep sets SEED .*use --seeds"),
    (["--datasets", "eurosatt"],
     r"unknown dataset 'eurosatt' \(--datasets / --source\): no config file .*eurosatt\.yaml\. The shipped stems"),
    (["--protocol", "cd", "--source", "imagenett"], r"unknown dataset 'imagenett'"),
])
def test_sweep_refuses_bad_selection_before_any_job(tmp_path, capsys, extra, what):
    from mmrl.cli import main as cli_main
    argv = ["sweep", "--protocol", "b2n", "--executor", "print", "--root", str(tmp_path), "--datasets", "eurosat",
            "--output", str(tmp_path / "out"), *extra]
    if "--protocol" in extra:
        del argv[1:3]
    assert cli_main(argv) == 2
    assert re.search(what, capsys.readouterr().err)


def test_sweep_output_that_is_a_file_is_named(tmp_path, capsys):
    from mmrl.cli import main as cli_main
    (tmp_path / "out").write_text("")
    assert cli_main(["sweep", "--protocol", "b2n", "--executor", "print", "--root", str(tmp_path), "--datasets",
                     "eurosat", "--output", str(tmp_path / "out")]) == 2
    assert f"--output {tmp_path / 'out'} is a file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def eurosat_root(tmp_path_factory):
    from mmrl.datatools.synthetic import write_synthetic_dataset
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset("eurosat", root, n_per_class=4)
    return root


@pytest.mark.parametrize("mutate, what", [
    (lambda d: d["train"][0].__setitem__(1, 99), r"'train' has labels up to 99 but none of \[10, 11"),
    (lambda d: d["test"].append([d["test"][0][0], 10, "Extra"]), r"entry \d+ of 'test' .* has label 10 \('Extra'\)"),
])
def test_split_labels_outside_the_training_classes_are_named(eurosat_root, tmp_path, capsys, mutate, what):
    import shutil

    from mmrl.cli import main as cli_main
    root = tmp_path / "root"
    shutil.copytree(eurosat_root, root)
    split = root / "eurosat" / "split_zhou_EuroSAT.json"
    d = json.loads(split.read_text())
    mutate(d)
    split.write_text(json.dumps(d))
    assert cli_main(["data", "show", "eurosat", "--root", str(root), "--fewshot-dir", str(tmp_path / "fs")]) == 2
    err = capsys.readouterr().err
    assert f"Split file {split}" in err and re.search(what, err)


@pytest.mark.parametrize("train", [[["2750/x.jpg", 0, "y"]], [5]])
def test_fewshot_file_with_non_path_entries_is_named(eurosat_root, tmp_path, capsys, train):
    from mmrl.cli import main as cli_main
    show = ["data", "show", "eurosat", "--root", str(eurosat_root), "--shots", "2", "--fewshot-dir", str(tmp_path)]
    assert cli_main(show) == 0
    (f,) = tmp_path.rglob("shot_2-seed_1.json")
    f.write_text(json.dumps({**json.loads(f.read_text()), "train": train}))
    capsys.readouterr()
    assert cli_main(show) == 2
    err = capsys.readouterr().err
    assert f"Few-shot file {f}" in err and "'train' is not a list of paths" in err


def test_weights_that_are_not_a_file_or_not_torch_are_named_with_the_fix(tmp_path):
    from mmrl.clip.backbone import check_backbone_options, load_backbone
    from mmrl.errors import WeightsError
    with pytest.raises(WeightsError, match=rf"points to {tmp_path / 'nope.pt'}, which does not exist"):
        check_backbone_options("ViT-B/16", str(tmp_path / "nope.pt"))
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(WeightsError, match=rf"{text} is corrupt.*Set MODEL.BACKBONE.WEIGHTS to an OpenAI CLIP"):
        load_backbone("ViT-B/16", str(text))


@pytest.fixture(scope="module")
def trained_coop(eurosat_root, tmp_path_factory):
    """A one-epoch CoOp training on the tiny backbone (its run directory)."""
    from engine_helpers import argv
    out = tmp_path_factory.mktemp("coop") / "run"
    assert run_main(argv(eurosat_root, out, trainer="CoOp", epochs=1, shots=1)) == 0
    return out


def test_model_dir_of_another_trainer_or_a_file_is_named_before_the_run(eurosat_root, trained_coop, tmp_path, capsys):
    from engine_helpers import argv
    out = tmp_path / "eval"
    assert run_main(argv(eurosat_root, out, "--eval-only", "--model-dir", str(trained_coop), subsample="new")) == 2
    assert f"--model-dir {trained_coop} holds a CoOp training" in capsys.readouterr().err and not out.exists()
    record = trained_coop / "record.json"
    assert run_main(argv(eurosat_root, out, "--eval-only", "--model-dir", str(record), subsample="new")) == 2
    assert f"--model-dir {record} is a file, not a folder" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("env, what", [({"SEEDS": "1 abc"}, "SEEDS='1 abc': expected whole numbers"),
                                       ({"SHOTS": "-1"}, "SHOTS='-1': expected whole numbers"),
                                       ({"DATA": "/nonexistent/data"}, "DATA=/nonexistent/data is not a folder")])
@pytest.mark.parametrize("script", ["base2new.sh", "few_shot.sh", "cross_dataset.sh"])
def test_protocol_scripts_name_the_environment_variable(tmp_path, script, env, what):
    import os
    import subprocess
    full = {**os.environ, "OUTPUT": str(tmp_path), "PYTHON": "false", **env}  # nothing may start
    full.pop("EXECUTOR", None)
    r = subprocess.run(["bash", str(REPO / "scripts" / script)], env=full, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and what in r.stderr


@pytest.mark.parametrize("name, what", [
    ("Foo", "is not known"), ("ViT-B16", "is not known"),
    ("random:ViT-B-61", "open_clip has no architecture 'ViT-B-61' (close: ViT-B-16"),
    ("ViT-X:openai", "open_clip has no architecture 'ViT-X'")])
def test_unknown_backbone_is_refused_before_the_run(tmp_path, capsys, name, what):
    out = tmp_path / "run"
    assert run_main(["--trainer", "MMRL", "--dataset-config-file", DATASET_YAML, "--config-file", MMRL_YAML,
                     "--output-dir", str(out), "--backbone", name, "TASK", "B2N"]) == 2
    assert f"MODEL.BACKBONE.NAME {name!r}" in (err := capsys.readouterr().err) and what in err and not out.exists()


def test_weights_where_of_an_unknown_release_is_named(capsys):
    from mmrl.cli import main as cli_main
    assert cli_main(["weights", "where", "ViT-B/61"]) == 2
    assert "'ViT-B/61' is not an OpenAI CLIP release; use one of ViT-B/32" in capsys.readouterr().err


def test_load_epoch_the_model_dir_lacks_is_named_before_the_run(eurosat_root, trained_coop, tmp_path, capsys):
    from engine_helpers import argv
    out = tmp_path / "eval"
    assert run_main(argv(eurosat_root, out, "--eval-only", "--model-dir", str(trained_coop), "--load-epoch", "7",
                         subsample="new", trainer="CoOp")) == 2
    assert "--load-epoch 7" in capsys.readouterr().err and not out.exists()


def test_lower_case_key_gets_the_key_as_hint():
    with pytest.raises(ConfigError, match="unknown config key 'optim.lr'. Did you mean OPTIM.LR"):
        resolve_config(args(opts=("optim.lr", "0.1")))
