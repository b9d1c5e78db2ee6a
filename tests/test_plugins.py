"""Plug-ins as an outside user writes them: modules in their own folder, found through
$MMRL_PLUGINS or an installed distribution's `mmrl.plugins` entry point, in every process
(each command below is a fresh interpreter, as a sweep job is); a broken plug-in is named
with the fix instead of a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmrl.errors import DatasetError

TOY = """
from mmrl.datasets import DatasetSpec, register
register(DatasetSpec("ToyBlobs", "toy_blobs", "toy-blobs", split_file="split_zhou_ToyBlobs.json"))
"""
BROKEN = {
    "raises": ('raise RuntimeError("boom")\n', ["plug_raises", "RuntimeError: boom", "plug_raises.py:1"]),
    "clash": ("from mmrl.trainers import Method, register\n"
              "class C(Method):\n    name = 'CoOp'\n    model_folder = 'x'\nregister(C())\n",
              ["plug_clash", "'CoOp' is already registered", "choose another name"]),
    "nofolder": ("from mmrl.trainers import Method, register\n"
                 "class C(Method):\n    name = 'NoFolder'\nregister(C())\n",
                 ["plug_nofolder", "model_folder"]),
    "dsclash": ("from mmrl.datasets import DatasetSpec, register\n"
                "register(DatasetSpec('EuroSAT', 'eurosat2', 'eurosat2'))\n",
                ["plug_dsclash", "clashes with 'EuroSAT'"]),
    "missingdep": ("import no_such_dependency_xyz\n", ["plug_missingdep", "no_such_dependency_xyz"]),
}


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("MMRL_PLUGINS", "MMRL_CONFIGS")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1]),
                                         env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _py(tmp_path, code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(tmp_path, **env), timeout=120)


LOOKUP = "from mmrl.datasets import get_spec; print(get_spec('ToyBlobs').folder)"


def test_a_dataset_plugin_named_in_the_env_is_found_by_a_fresh_process(tmp_path):
    (tmp_path / "toyds.py").write_text(TOY)
    assert _py(tmp_path, LOOKUP).returncode != 0  # not without being named
    done = _py(tmp_path, LOOKUP, MMRL_PLUGINS="toyds")
    assert done.returncode == 0 and done.stdout.strip() == "toy-blobs", done.stderr


def test_an_installed_plugin_is_found_through_its_entry_point(tmp_path):
    (tmp_path / "toyds.py").write_text(TOY)
    dist = tmp_path / "toyds-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyds\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mmrl.plugins]\ntoy = toyds\n")
    done = _py(tmp_path, LOOKUP)
    assert done.returncode == 0 and done.stdout.strip() == "toy-blobs", done.stderr


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_plugin_is_named_without_a_traceback(tmp_path, kind):
    text, wanted = BROKEN[kind]
    (tmp_path / f"plug_{kind}.py").write_text(text)
    done = subprocess.run([sys.executable, "-m", "mmrl", "status", "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env=_env(tmp_path, MMRL_PLUGINS=f"plug_{kind}"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: ") and "MMRL_PLUGINS" in done.stderr
    for w in wanted:
        assert w in done.stderr, (w, done.stderr)


def test_train_py_names_a_broken_plugin_too(tmp_path):
    (tmp_path / "plug_raises.py").write_text(BROKEN["raises"][0])
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "train.py"), "--trainer",
                           "MMRL"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env=_env(tmp_path, MMRL_PLUGINS="plug_raises"))
    assert done.returncode != 0 and "Traceback" not in done.stderr and "plug_raises" in done.stderr, done.stderr


def test_a_clashing_dataset_is_a_dataset_error():
    from mmrl.datasets import DatasetSpec, register
    with pytest.raises(DatasetError, match="clashes with 'EuroSAT'"):
        register(DatasetSpec("EuroSAT", "eurosat_copy", "eurosat-copy"))


def test_a_plugin_config_tree_holds_only_its_own_files(tmp_path, monkeypatch):
    """$MMRL_CONFIGS may hold just the plug-in's YAMLs: what it lacks comes from the package."""
    from mmrl.config.files import config_file, load_overrides
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "toy_blobs.yaml").write_text("DATASET:\n  NAME: ToyBlobs\n")
    monkeypatch.setenv("MMRL_CONFIGS", str(tmp_path))
    assert config_file("datasets", "toy_blobs.yaml") == tmp_path / "datasets" / "toy_blobs.yaml"
    shipped = config_file("datasets", "eurosat.yaml")
    assert shipped.is_file() and tmp_path not in shipped.parents
    entry, path = load_overrides("MMRL", "B2N", "EuroSAT")
    assert entry and path.is_file()


def test_a_sweep_refuses_a_dataset_or_trainer_without_its_yaml_before_running(tmp_path, monkeypatch, capsys):
    from mmrl.cli import main
    from mmrl.trainers import registry
    (tmp_path / "data").mkdir()
    sweep = ["sweep", "--protocol", "b2n", "--trainers", "CoOp", "--seeds", "1", "--root", str(tmp_path / "data"),
             "--output", str(tmp_path / "out")]
    assert main([*sweep, "--datasets", "no_such_stem"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'no_such_stem'" in err and "datasets/no_such_stem.yaml" in err and "MMRL_CONFIGS" in err
    monkeypatch.setattr(registry.get("CoOp"), "config_folder", lambda: "NoSuchFolder")
    assert main([*sweep, "--datasets", "eurosat"]) == 2
    err = capsys.readouterr().err
    assert "--trainers CoOp" in err and "trainers/NoSuchFolder/vit_b16_ctxv1.yaml" in err
    assert not (tmp_path / "out").exists()  # refused before any job ran


def test_status_does_not_need_the_config_files(tmp_path, monkeypatch, capsys):
    from mmrl.cli import main
    monkeypatch.setenv("MMRL_CONFIGS", str(tmp_path / "mine"))
    (tmp_path / "out/base2new/train_base/toy_blobs/shots_16/CoOp/vit_b16/seed1").mkdir(parents=True)
    assert main(["status", "--protocol", "b2n", "--output", str(tmp_path / "out")]) == 1
    assert "toy_blobs" in capsys.readouterr().out


def test_status_lists_a_plugin_dataset_found_on_disk(tmp_path):
    from mmrl.sweep.discover import select
    (tmp_path / "base2new/train_base/toy_blobs/shots_16/CoOp/vit_b16/seed1").mkdir(parents=True)
    sel = select(str(tmp_path), "b2n", whole_protocol=True)
    assert "toy_blobs" in sel.datasets and "eurosat" in sel.datasets


def test_the_sbatch_script_carries_the_plugin_variables(monkeypatch):
    from mmrl.sweep.printer import sbatch_script
    monkeypatch.setenv("MMRL_PLUGINS", "myplug.probe,myplug.data")
    monkeypatch.setenv("MMRL_CONFIGS", "/my configs")
    text = sbatch_script([0, 1], ["--protocol", "b2n"], cwd="/w", python="python", parallelism=2,
                         timeout_min=60, log_dir="/w/logs")
    assert "export MMRL_PLUGINS=myplug.probe,myplug.data" in text
    assert "export MMRL_CONFIGS='/my configs'" in text
    assert text.index("export MMRL_PLUGINS") < text.index("-m mmrl sweep")



def test_the_printed_commands_carry_the_plugin_variables(tmp_path, monkeypatch, capsys):
    from mmrl.cli import main
    monkeypatch.setenv("MMRL_PLUGINS", "json")  # importable, registers nothing
    (tmp_path / "data").mkdir()
    assert main(["sweep", "--protocol", "b2n", "--trainers", "CoOp", "--datasets", "eurosat", "--seeds", "1",
                 "--root", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--executor", "print"]) == 0
    out = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(out) if " train " in line)
    assert "export MMRL_PLUGINS=json" in out[:first]


@pytest.mark.parametrize("missing, attrs", [
    ("build", {}),
    ("build_for_eval", {"build": lambda self, ctx, *, for_training: None}),
    ("PREC", {"build": lambda self, ctx, *, for_training: None, "build_for_eval": lambda self, ctx, ck: None}),
])
def test_a_method_missing_what_a_run_needs_is_refused_at_registration(missing, attrs):
    from mmrl.errors import ConfigError
    from mmrl.trainers import Method, names, register
    cls = type("Half", (Method,), {"name": f"Half_{missing}", "model_folder": "half", **attrs})
    with pytest.raises(ConfigError, match=f"Half.*{missing}"):
        register(cls())
    assert f"Half_{missing}" not in names()



def _toy_images(root):
    """ToyBlobs in CoOp's layout: images/<class>/*.jpg and the split JSON (labels 0..3)."""
    import json
    import random

    from PIL import Image, ImageDraw
    colours = {"red blob": (220, 30, 30), "blue blob": (30, 30, 220), "green blob": (30, 200, 30),
               "yellow blob": (230, 220, 20)}
    rng, split = random.Random(0), {"train": [], "val": [], "test": []}
    for label, (name, colour) in enumerate(colours.items()):
        (root / "images" / name).mkdir(parents=True)
        for i in range(12):
            im = Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3)))
            x, y, s = rng.randrange(4, 30), rng.randrange(4, 30), rng.randrange(14, 30)
            ImageDraw.Draw(im).ellipse([x, y, x + s, y + s], fill=colour)
            im.save(root / "images" / name / f"{i}.jpg")
            split["train" if i < 6 else "val" if i < 8 else "test"].append([f"{name}/{i}.jpg", label, name])
    (root / "split_zhou_ToyBlobs.json").write_text(json.dumps(split))


@pytest.mark.slow
def test_an_installed_dataset_plugin_is_swept_and_tabulated(tmp_path):
    """No variable names the plug-in: the sweep's job processes find it through its entry point,
    and its YAML in a $MMRL_CONFIGS folder that holds nothing else."""
    (tmp_path / "toyds.py").write_text(TOY)
    dist = tmp_path / "toyds-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyds\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mmrl.plugins]\ntoy = toyds\n")
    (tmp_path / "configs" / "datasets").mkdir(parents=True)
    (tmp_path / "configs" / "datasets" / "toy_blobs.yaml").write_text("DATASET:\n  NAME: ToyBlobs\n")
    _toy_images(tmp_path / "data" / "toy-blobs")
    env = _env(tmp_path, MMRL_CONFIGS=str(tmp_path / "configs"), OMP_NUM_THREADS="1")

    def mmrl(*args):
        return subprocess.run([sys.executable, "-m", "mmrl", *args], capture_output=True, text=True, cwd=tmp_path,
                              env=env, timeout=300)
    sweep = mmrl("sweep", "--protocol", "b2n", "--trainers", "ZeroshotCLIP", "--datasets", "toy_blobs",
                 "--root", "data", "--output", "out", "--opts", "MODEL.BACKBONE.NAME", "demo-tiny",
                 "INPUT.SIZE", "(64, 64)")
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr
    table = mmrl("table", "--protocol", "b2n", "--output", "out", "--format", "csv")
    assert table.returncode == 0, table.stderr
    row = next(r for r in table.stdout.splitlines() if r.startswith("ZeroshotCLIP,ToyBlobs,"))
    assert 0 <= float(row.split(",")[2]) <= 100


NOARCH = """
import torch
from torch import nn
from yacs.config import CfgNode as CN
from mmrl.trainers import Method, register

class Head(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(3, n)
    def forward_train(self, images, labels):
        logits = self.fc(images.mean(dim=(2, 3)))
        return nn.functional.cross_entropy(logits, labels), logits, {}

class NoArch(Method):
    name, model_folder = "NoArch", "noarch"
    def config_block(self):
        node = CN()
        node.PREC = "fp32"
        return node
    def build(self, ctx, *, for_training):
        return Head(len(ctx.classnames))
    def build_for_eval(self, ctx, ck):
        raise AssertionError

register(NoArch())
"""


@pytest.mark.slow
def test_a_model_without_arch_fails_before_training_naming_the_fix(tmp_path):
    from engine_helpers import argv, write_eurosat
    (tmp_path / "noarch.py").write_text(NOARCH)

    class Factory:
        def mktemp(self, name):
            (tmp_path / name).mkdir()
            return tmp_path / name
    args = argv(write_eurosat(Factory()), tmp_path / "run", trainer="NoArch", epochs=1)
    args[args.index("--config-file") + 1] = str(tmp_path / "none.yaml")
    (tmp_path / "none.yaml").write_text("OPTIM:\n  NAME: sgd\n  LR: 0.01\n  LR_SCHEDULER: cosine\n")
    done = subprocess.run([sys.executable, "-m", "mmrl", "train", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=_env(tmp_path, MMRL_PLUGINS="noarch"), timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "NoArch" in done.stderr and "define arch(model)" in done.stderr, done.stderr
    assert "epoch [1/1]" not in (tmp_path / "run" / "log.txt").read_text()
