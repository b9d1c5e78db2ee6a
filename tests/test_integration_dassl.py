"""Our trainers inside Dassl (mmrl.integrations.dassl), as a CoOp-family train.py runs them.

Needs the real Dassl: .ci/run makes the snapshot in ../shared/third_party/Dassl.pytorch
importable. Without it the Dassl tests skip, except under CI with the snapshot present, where
a missing Dassl is a failure.
"""
import io
import json
import logging
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from mmrl.engine.run import main as run_main

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO.parent / "shared" / "third_party" / "Dassl.pytorch"


def test_without_dassl_the_import_says_what_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "dassl" or m.startswith("dassl.")] + ["mmrl.integrations.dassl"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "dassl", None)  # as if not installed
    with pytest.raises(ImportError) as err:
        import mmrl.integrations.dassl  # noqa: F401
    msg = str(err.value)
    assert "github.com/KaiyangZhou/Dassl.pytorch" in msg and "pip install -e ." in msg and "mmrl[dassl]" in msg


def _fake_dassl(monkeypatch, tmp_path, package: str, engine: str) -> None:
    """A `dassl` package with these __init__ texts first on the path, nothing of Dassl imported yet."""
    fake = tmp_path / "dassl"
    (fake / "engine").mkdir(parents=True)
    (fake / "__init__.py").write_text(package)
    (fake / "engine" / "__init__.py").write_text(engine)
    for name in [m for m in sys.modules if m == "dassl" or m.startswith("dassl.")] + ["mmrl.integrations.dassl"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_package_dassl_imports_is_named(monkeypatch, tmp_path):
    _fake_dassl(monkeypatch, tmp_path, "", "import tensorboard_not_installed_here\n")
    with pytest.raises(ImportError, match=r"imports 'tensorboard_not_installed_here'.*pip install 'mmrl\[dassl\]'"):
        import mmrl.integrations.dassl  # noqa: F401


def test_a_dassl_without_our_names_is_called_another_version(monkeypatch, tmp_path):
    _fake_dassl(monkeypatch, tmp_path, '__version__ = "0.1.0"\n', "TRAINER_REGISTRY = None\n")
    with pytest.raises(ImportError) as err:
        import mmrl.integrations.dassl  # noqa: F401
    msg = str(err.value)
    assert "0.1.0" in msg and str(tmp_path / "dassl") in msg and "'TrainerX'" in msg and "0.6.3" in msg
    assert "github.com/KaiyangZhou/Dassl.pytorch" in msg and "pip install -e ." in msg


_logging_disabled = logging.root.manager.disable
try:
    import dassl.engine  # noqa: F401
    WHY_NOT = ""
except ImportError as e:
    if os.environ.get("CI") and SNAPSHOT.is_dir():
        raise ImportError(f"CI: Dassl must be importable from {SNAPSHOT} (.ci/run installs it): {e}") from e
    WHY_NOT = f"Dassl is not importable ({e}); .ci/run makes the snapshot in {SNAPSHOT} importable"
finally:
    # importing Dassl's WILDS datasets disables logging below WARNING process-wide: keep the
    # other tests' log lines
    logging.disable(_logging_disabled)
needs_dassl = pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT)


def _register_coop_style_eurosat():
    """A CoOp-style EuroSAT loader registered in Dassl by the test (split JSON, few-shot, base/new)."""
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum

    if "EuroSAT" in DATASET_REGISTRY.registered_names():
        return

    @DATASET_REGISTRY.register()
    class EuroSAT(DatasetBase):
        def __init__(self, cfg):
            folder = Path(cfg.DATASET.ROOT).expanduser().resolve() / "eurosat"
            split = json.loads((folder / "split_zhou_EuroSAT.json").read_text())

            def read(key):
                return [Datum(impath=str(folder / "2750" / p), label=int(y), classname=c) for p, y, c in split[key]]

            train, test = read("train"), read("test")
            if cfg.DATASET.NUM_SHOTS >= 1:
                train = self.generate_fewshot_dataset(train, num_shots=cfg.DATASET.NUM_SHOTS)
            train, test = _subsample(train, test, cfg.DATASET.SUBSAMPLE_CLASSES)
            super().__init__(train_x=train, test=test)


def _subsample(train, test, mode):
    from dassl.data.datasets import Datum
    if mode == "all":
        return train, test
    labels = sorted({d.label for d in train})
    m = math.ceil(len(labels) / 2)
    keep = labels[:m] if mode == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(keep)}
    return [[Datum(impath=d.impath, label=relabel[d.label], classname=d.classname) for d in lst if d.label in relabel]
            for lst in (train, test)]


def trainer_yaml(trainer):
    """The file our sweeps run for B2N (zero-shot CLIP borrows MMRL's)."""
    from mmrl.sweep.plan import cfg_for
    from mmrl.trainers import registry
    method = registry.get(trainer)
    return str(REPO / "configs/trainers" / method.config_folder() / f"{cfg_for('b2n', trainer, 'eurosat')}.yaml")


FAST = ["MODEL.BACKBONE.NAME", "tiny-test", "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TEST.BATCH_SIZE", 64,
        "TRAIN.PRINT_FREQ", 5]


def dassl_cfg(trainer, root, out, subsample, opts=()):
    """What a CoOp-family train.py's setup_cfg does, with our extend_cfg called from its extend_cfg."""
    from dassl.config import get_cfg_default
    import mmrl.integrations.dassl as mmrl_dassl
    cfg = get_cfg_default()
    mmrl_dassl.extend_cfg(cfg, trainer)  # the trainer's own blocks (KgCoOp's TRAINER.COOP is not CoOp's)
    cfg.merge_from_file(str(REPO / "configs/datasets/eurosat.yaml"))
    cfg.merge_from_file(trainer_yaml(trainer))
    cfg.DATASET.ROOT, cfg.OUTPUT_DIR, cfg.SEED, cfg.TRAINER.NAME = str(root), str(out), 1, trainer
    cfg.merge_from_list(mmrl_dassl.protocol_overrides(trainer, "B2N", "EuroSAT"))
    cfg.merge_from_list(["DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", subsample, "TASK", "B2N",
                         "OPTIM.MAX_EPOCH", 2, *FAST, *opts])
    cfg.freeze()
    return cfg


def harness_eval(trainer, root, model_dir, out, subsample):
    argv = ["--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"),
            "--config-file", trainer_yaml(trainer), "--output-dir", str(out),
            "--eval-only", *(["--model-dir", str(model_dir)] if model_dir else []),
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", subsample, "TASK", "B2N",
            "DATASET.FEWSHOT_DIR", str(Path(out).parent / "fewshot"), "TEST.SAVE_LOGITS", "True",
            "TEST.CACHE_DIR", "none", *[str(x) for x in FAST]]
    assert run_main(argv) == 0
    return np.load(Path(out) / "predictions.npz")


def dassl_test_logits(trainer):
    """Run Dassl's test() and keep what it scored."""
    seen = []
    process = trainer.evaluator.process

    def keep(output, label):
        seen.append(output.detach().cpu().numpy())
        return process(output, label)

    trainer.evaluator.process = keep
    acc = trainer.test()
    return np.concatenate(seen), acc


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from mmrl.datatools.synthetic import write_synthetic_dataset
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset("eurosat", root, n_per_class=20)
    return root


@pytest.fixture
def dassl_logger():
    """Dassl's setup_logger as train.py calls it; afterwards stdout is put back and the tee
    disarmed (its __del__ would close pytest's capture stream)."""
    from dassl.utils import setup_logger
    saved, tees = sys.stdout, []

    def setup(output_dir):
        setup_logger(output_dir)
        tees.append(sys.stdout)

    yield setup
    sys.stdout = saved
    for tee in tees:
        tee.flush()
        tee.file.close()
        tee.file, tee.console = None, io.StringIO()


@needs_dassl
def test_every_harness_method_is_registered_under_the_authors_names():
    from dassl.engine import TRAINER_REGISTRY, TrainerX
    import mmrl.integrations.dassl  # noqa: F401  (registers)
    from mmrl.trainers import registry
    for name in registry.names():
        cls = TRAINER_REGISTRY.get(name)
        assert issubclass(cls, TrainerX) and cls.METHOD == name and cls.__module__ == "mmrl.integrations.dassl"


@pytest.mark.slow
@needs_dassl
@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_train_in_dassl_then_logits_equal_the_harness(trainer, data_root, tmp_path, dassl_logger):
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed
    _register_coop_style_eurosat()

    out = tmp_path / "train_base"
    cfg = dassl_cfg(trainer, data_root, out, "base")
    import mmrl.integrations.dassl as mmrl_dassl
    overrides = mmrl_dassl.protocol_overrides(trainer, "B2N", "EuroSAT")
    assert overrides  # EuroSAT has per-dataset settings for both methods; they reach the Dassl config
    for key, value in zip(overrides[0::2], overrides[1::2]):
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    trained_dim = cfg.TRAINER[trainer].REP_DIM
    set_random_seed(cfg.SEED)
    dassl_logger(cfg.OUTPUT_DIR)
    dassl_trainer = build_trainer(cfg)
    dassl_trainer.train()
    sys.stdout.flush()

    folder = out / "MultiModalRepresentationLearner"
    assert (folder / "checkpoint").read_text().strip() == "model.pth.tar-2"
    log = (out / "log.txt").read_text()
    for line in ["Loading trainer: " + trainer, "Loading CLIP (backbone: tiny-test)", "Building custom CLIP",
                 "Parameters to be updated: {", "epoch [2/2] batch [5/5]", "lr 1.0000e-03",
                 f"Checkpoint saved to {folder / 'model.pth.tar-2'}", "Finish training", "=> result"]:
        assert line in log, line

    # evaluation on the new classes through Dassl: the config's REP_DIM differs from the
    # checkpoint's, so the architecture must come from the checkpoint
    ev = tmp_path / "test_new_dassl"
    cfg_new = dassl_cfg(trainer, data_root, ev, "new", opts=[f"TRAINER.{trainer}.REP_DIM", 96])
    set_random_seed(cfg_new.SEED)
    dassl_eval = build_trainer(cfg_new)
    dassl_eval.load_model(str(out))
    logits, acc = dassl_test_logits(dassl_eval)
    assert dassl_eval.head == "class" and dassl_eval.model.spec.rep_dim == trained_dim != 96

    ours = harness_eval(trainer, data_root, out, tmp_path / "test_new_ours", "new")
    assert str(ours["head"]) == "class"
    labels = np.array([d.label for d in dassl_eval.dm.dataset.test])
    assert np.array_equal(ours["label"], labels)
    assert all(p.endswith(str(q)) for p, q in zip([d.impath for d in dassl_eval.dm.dataset.test], ours["impath"]))
    assert logits.shape == ours["logits"].shape == (len(labels), 5)
    np.testing.assert_allclose(logits, ours["logits"], rtol=0, atol=1e-4)
    assert acc == pytest.approx(100.0 * (ours["pred"] == ours["label"]).mean())


@pytest.mark.slow
@needs_dassl
@pytest.mark.parametrize("trainer", ["CoOp", "PromptSRC", "CoCoOp", "KgCoOp", "IVLP", "MaPLe"])
def test_baselines_train_in_dassl_and_their_logits_equal_the_harness(trainer, data_root, tmp_path, dassl_logger):
    """A text-prompt and a deep-prompt baseline (PromptSRC's aggregation runs in Dassl's epochs)."""
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed
    from mmrl.trainers import registry
    _register_coop_style_eurosat()
    out = tmp_path / "train_base"
    cfg = dassl_cfg(trainer, data_root, out, "base")
    set_random_seed(cfg.SEED)
    dassl_logger(cfg.OUTPUT_DIR)
    dassl_trainer = build_trainer(cfg)
    dassl_trainer.train()
    sys.stdout.flush()
    folder = out / registry.get(trainer).model_folder
    assert (folder / "checkpoint").read_text().strip() == "model.pth.tar-2"
    assert (dassl_trainer.epoch_hook is not None) == (trainer == "PromptSRC")
    if dassl_trainer.epoch_hook:
        assert dassl_trainer.epoch_hook.gpa.complete

    ev = tmp_path / "test_new_dassl"
    cfg_new = dassl_cfg(trainer, data_root, ev, "new")
    set_random_seed(cfg_new.SEED)
    dassl_eval = build_trainer(cfg_new)
    dassl_eval.load_model(str(out))
    logits, acc = dassl_test_logits(dassl_eval)
    ours = harness_eval(trainer, data_root, out, tmp_path / "test_new_ours", "new")
    np.testing.assert_allclose(logits, ours["logits"], rtol=0, atol=1e-4)
    assert acc == pytest.approx(100.0 * (ours["pred"] == ours["label"]).mean())


@needs_dassl
def test_zeroshot_clip_in_dassl_equals_the_harness(data_root, tmp_path):
    from dassl.engine import build_trainer
    from mmrl.errors import ConfigError
    _register_coop_style_eurosat()
    cfg = dassl_cfg("ZeroshotCLIP", data_root, tmp_path / "zs_dassl", "new")
    trainer = build_trainer(cfg)
    trainer.load_model("")  # what train.py --eval-only does without --model-dir: nothing to load
    logits, _ = dassl_test_logits(trainer)
    ours = harness_eval("ZeroshotCLIP", data_root, None, tmp_path / "zs_ours", "new")
    np.testing.assert_allclose(logits, ours["logits"], rtol=0, atol=1e-4)
    with pytest.raises(ConfigError, match="--eval-only"):
        trainer.train()


@needs_dassl
def test_a_name_the_repository_registered_is_left_alone(monkeypatch, data_root, tmp_path):
    from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
    import mmrl.integrations.dassl as mmrl_dassl

    class TheirsMMRL(TrainerX):
        pass

    registry = TRAINER_REGISTRY._obj_map
    monkeypatch.setitem(registry, "MMRL_theirs", TheirsMMRL)
    with pytest.warns(UserWarning, match=r"already has a trainer named 'MMRL_theirs'.*as_name='MMRL_mmrl'"):
        assert mmrl_dassl.register("MMRL", as_name="MMRL_theirs") is None
    assert TRAINER_REGISTRY.get("MMRL_theirs") is TheirsMMRL

    monkeypatch.setitem(registry, "MMRL_mmrl", None)  # so that monkeypatch removes the name afterwards
    del registry["MMRL_mmrl"]
    cls = mmrl_dassl.register("MMRL", as_name="MMRL_mmrl")
    assert TRAINER_REGISTRY.get("MMRL_mmrl") is cls and cls.METHOD == "MMRL"
    assert mmrl_dassl.register("MMRL", as_name="MMRL_mmrl") is cls  # registering again changes nothing
    _register_coop_style_eurosat()
    renamed = build_trainer(dassl_cfg("MMRL", data_root, tmp_path, "base", opts=["TRAINER.NAME", "MMRL_mmrl"]))
    assert type(renamed) is cls and renamed.model.spec.trainer == "MMRL" and renamed.head == "fused"


@needs_dassl
def test_a_config_without_our_keys_is_refused_with_the_fix(data_root, tmp_path):
    from dassl.config import get_cfg_default
    from dassl.engine import build_trainer
    import mmrl.integrations.dassl  # noqa: F401  (registers MMRL)
    from mmrl.errors import ConfigError
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "MMRL"
    cfg.DATASET.ROOT, cfg.OUTPUT_DIR = str(data_root), str(tmp_path)
    with pytest.raises(ConfigError, match=r"lacks \d+ of our keys \(DATASET\..*extend_cfg\(cfg\)"):
        build_trainer(cfg)


@needs_dassl
def test_kgcoop_without_its_block_is_refused_with_the_fix(data_root, tmp_path):
    """CoOp and KgCoOp both read TRAINER.COOP, with other keys (W) and types (CTX_INIT)."""
    from dassl.config import get_cfg_default
    from dassl.engine import build_trainer
    import mmrl.integrations.dassl as mmrl_dassl
    from mmrl.errors import ConfigError
    _register_coop_style_eurosat()
    cfg = get_cfg_default()
    mmrl_dassl.extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs/datasets/eurosat.yaml"))
    cfg.merge_from_list(["DATASET.ROOT", str(data_root), "OUTPUT_DIR", str(tmp_path), "TRAINER.NAME", "KgCoOp",
                         "TASK", "B2N", "OPTIM.NAME", "sgd", "OPTIM.LR_SCHEDULER", "cosine", *FAST])
    with pytest.raises(ConfigError, match=r"TRAINER\.COOP\.W.*extend_cfg\(cfg, 'KgCoOp'\)"):
        build_trainer(cfg)


@needs_dassl
def test_extend_cfg_takes_a_renamed_trainers_blocks(monkeypatch):
    from dassl.config import get_cfg_default
    from dassl.engine import TRAINER_REGISTRY
    import mmrl.integrations.dassl as mmrl_dassl
    monkeypatch.setitem(TRAINER_REGISTRY._obj_map, "KgCoOp_mmrl", None)  # removed again afterwards
    del TRAINER_REGISTRY._obj_map["KgCoOp_mmrl"]
    mmrl_dassl.register("KgCoOp", as_name="KgCoOp_mmrl")
    cfg = get_cfg_default()
    mmrl_dassl.extend_cfg(cfg, "KgCoOp_mmrl")
    assert cfg.TRAINER.COOP.W == 1.0 and cfg.TRAINER.COOP.CTX_INIT is False
    cfg = get_cfg_default()
    mmrl_dassl.extend_cfg(cfg, "SomeoneElsesTrainer")  # not ours: the common blocks
    assert "W" not in cfg.TRAINER.COOP and cfg.TRAINER.COOP.CTX_INIT == ""


@pytest.mark.slow
@needs_dassl
def test_an_official_run_directory_loaded_through_dassl_equals_the_harness(data_root, tmp_path):
    """The authors' Dassl checkpoint (pickled scheduler) through Dassl's load_model, as their test scripts run it."""
    import torch
    from dassl.engine import build_trainer
    from test_models_coop import tiny_start_embedding
    from test_official_run_dirs import official_run
    _register_coop_style_eurosat()
    g = torch.Generator().manual_seed(0)
    official = {"ctx": (0.05 * torch.randn(4, 64, generator=g)).half(),
                "token_prefix": tiny_start_embedding().expand(5, 1, 64).half(),
                "token_suffix": torch.zeros(5, 72, 64).half()}
    official_run(tmp_path / "official", "CoOp", official)
    trainer = build_trainer(dassl_cfg("CoOp", data_root, tmp_path / "ev_dassl", "new"))
    trainer.load_model(str(tmp_path / "official"), epoch=5)
    logits, _ = dassl_test_logits(trainer)
    ours = harness_eval("CoOp", data_root, tmp_path / "official", tmp_path / "ev_ours", "new")
    np.testing.assert_allclose(logits, ours["logits"], rtol=0, atol=1e-4)


@pytest.mark.slow
@needs_dassl
def test_nothing_but_the_integration_imports_dassl():
    import subprocess
    code = ("import importlib, pkgutil, sys, mmrl\n"
            "for m in pkgutil.walk_packages(mmrl.__path__, 'mmrl.'):\n"
            "    if not m.name.startswith('mmrl.integrations.dassl') and not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dassl'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@needs_dassl
def test_a_dataset_template_given_as_a_list_is_read(monkeypatch, data_root, tmp_path):
    """Tip-Adapter-style dataset classes keep `template = ['a centered satellite photo of {}.']`."""
    from dassl.data.datasets import DATASET_REGISTRY
    from dassl.engine import build_trainer
    from mmrl.errors import ConfigError
    _register_coop_style_eurosat()
    cls = DATASET_REGISTRY.get("EuroSAT")
    monkeypatch.setattr(cls, "template", "a satellite photo of {}.", raising=False)
    as_str, _ = dassl_test_logits(build_trainer(dassl_cfg("ZeroshotCLIP", data_root, tmp_path / "s", "new")))
    monkeypatch.setattr(cls, "template", ["a satellite photo of {}."])
    as_list, _ = dassl_test_logits(build_trainer(dassl_cfg("ZeroshotCLIP", data_root, tmp_path / "l", "new")))
    np.testing.assert_array_equal(as_str, as_list)
    monkeypatch.setattr(cls, "template", ["a photo of a {}.", "a satellite photo of {}."])
    with pytest.raises(ConfigError, match=r"EuroSAT.*template.*2 templates.*one"):
        build_trainer(dassl_cfg("ZeroshotCLIP", data_root, tmp_path / "m", "new"))
