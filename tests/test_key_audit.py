"""Two promises checked key by key on tiny trainings: a key the config hash leaves out changes
nothing a training computes, and a shared evaluation pass gives each run what its own pass gives."""
import contextlib
import io
import shutil

import numpy as np
import pytest
import torch

from mmrl.config import resolve_config
from mmrl.config.identity import NON_IDENTITY_KEYS, config_hash
from mmrl.datatools.synthetic import write_synthetic_dataset
from mmrl.engine import trainer as engine_trainer
from mmrl.engine.args import parse_run_args
from mmrl.engine.run import main as run_main, main_many
from engine_helpers import REPO, argv

CONFIGS = {"MMRL": "vit_b16", "MMRLpp": "vit_b16", "CoOp": "vit_b16", "CoCoOp": "vit_b16_c4_ep10_batch1_ctxv1",
           "KgCoOp": "vit_b16_ep100_ctxv1", "IVLP": "vit_b16_c2_ep5_batch4_2+2ctx",
           "MaPLe": "vit_b16_c2_ep5_batch4_2ctx", "PromptSRC": "vit_b16_c2_ep20_batch4_4+4ctx", "ZeroshotCLIP": None}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The synthetic EuroSAT and an identical copy elsewhere (DATASET.ROOT names a place, not the data)."""
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset("eurosat", root / "a", n_per_class=10)
    shutil.copytree(root / "a", root / "b", copy_function=shutil.copy2)
    return root


def run_argv(root, out, trainer, *named, opts=()):
    a = argv(root, out, *named, trainer=trainer, shots=2, epochs=2,
             opts=["TEST.CACHE_DIR", "none", "TEST.SAVE_LOGITS", "True", *opts])
    i = a.index("--config-file")
    if CONFIGS[trainer]:
        a[i + 1] = str(REPO / f"configs/trainers/{trainer}/{CONFIGS[trainer]}.yaml")
    else:
        del a[i:i + 2]
    return a


def quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args)


def trained_state(out):
    ck = next(out.rglob("checkpoint"))
    return torch.load(ck.parent / ck.read_text().strip(), weights_only=True)["state_dict"]


def config_of(args):
    return resolve_config(parse_run_args(args)).cfg


def predictions(out):
    with np.load(out / "predictions.npz") as z:
        return {k: z[k] for k in z.files}


def same_predictions(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One tiny training per method, trained on first use: its run directory."""
    done = {}

    def get(trainer):
        if trainer not in done:
            out = tmp_path_factory.mktemp(trainer) / "train"
            assert quiet(run_main, run_argv(data / "a", out, trainer)) == 0
            done[trainer] = out
        return done[trainer]
    return get


# -- (B) keys out of the hash -------------------------------------------------------------------

# Each key of NON_IDENTITY_KEYS: a different value for it (a function of the data folder and the
# run's output dir), or why a training on the CPU cannot show that it changes nothing.
OTHER_VALUE = {
    "OUTPUT_DIR": lambda data, out: None,  # every run below has its own
    "RESUME": lambda data, out: str(out),  # the only value a run accepts besides ""
    "DATASET.ROOT": lambda data, out: str(data / "b"),
    "DATASET.FEWSHOT_DIR": lambda data, out: str(out.parent / "other_fewshot"),
    "MODEL.BACKBONE.CACHE_DIR": lambda data, out: str(out.parent / "clip_cache"),
    "VERBOSE": lambda data, out: "False",
    "TRAIN.PRINT_FREQ": lambda data, out: "1",
    "TEST.SAVE_LOGITS": lambda data, out: "False",
    "TEST.CACHE_DIR": lambda data, out: str(out.parent / "test_cache"),
    "TRAIN.CUDA_GRAPH": lambda data, out: "False",
    "DATALOADER.NUM_WORKERS": "changes the augmentations (docs/protocol.md); a resume with another value is "
                              "refused (test_refusals)",
    "USE_CUDA": "only moves the run between devices, whose arithmetic differs (docs/protocol.md)",
}
# Other methods' blocks, which a run's hash leaves out: a sample of the keys that shape a model.
OTHER_BLOCKS = [("MMRL", "TRAINER.COOP.N_CTX", "8"), ("MMRL", "TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT", "5"),
                ("CoOp", "TRAINER.IVLP.N_CTX_TEXT", "3"), ("CoOp", "TRAINER.PROMPTSRC.GPA_MEAN", "1"),
                ("IVLP", "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle"), ("IVLP", "TRAINER.MAPLE.PROMPT_DEPTH", "3"),
                ("CoCoOp", "TRAINER.COOP.CSC", "True"), ("KgCoOp", "TRAINER.IVLP.CTX_INIT", "a photo")]


def test_every_key_left_out_of_the_hash_is_checked_or_has_a_reason():
    assert set(OTHER_VALUE) == set(NON_IDENTITY_KEYS)


CHECKED = [("MMRL", k, v) for k, v in OTHER_VALUE.items() if callable(v)] + OTHER_BLOCKS


@pytest.mark.parametrize("trainer, key, value", CHECKED, ids=[f"{t}-{k}" for t, k, _ in CHECKED])
def test_a_key_left_out_of_the_hash_changes_nothing_a_training_computes(data, trained, tmp_path, trainer, key, value):
    base = trained(trainer)
    out = tmp_path / "run"
    value = value(data, out) if callable(value) else value
    root = data / "b" if key == "DATASET.ROOT" else data / "a"
    args = run_argv(root, out, trainer, opts=() if value is None else (key, value))
    assert config_hash(config_of(args)) == config_hash(config_of(run_argv(data / "a", base, trainer)))
    assert quiet(run_main, args) == 0
    want, got = trained_state(base), trained_state(out)
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    want, got = predictions(base), predictions(out)
    assert all(np.array_equal(got[k], want[k]) for k in got) and np.array_equal(got["pred"], want["pred"])


# -- (A) the shared evaluation pass ------------------------------------------------------------

def eval_argv(data, trained, out, trainer, opts=()):
    named = ("--eval-only",) if CONFIGS[trainer] is None else ("--model-dir", str(trained(trainer)), "--eval-only")
    return run_argv(data / "a", out, trainer, *named, opts=opts)


@pytest.fixture
def passes(monkeypatch):
    """The trainer names of each shared pass the engine runs."""
    seen = []
    orig = engine_trainer.evaluate_trainers

    def spy(trainers):
        seen.append([t.cfg.TRAINER.NAME for t in trainers])
        return orig(trainers)
    monkeypatch.setattr(engine_trainer, "evaluate_trainers", spy)
    return seen


# (key, value, whether the two evaluations share a pass): keys that change the test pass, and
# keys that change only what a model computes on it
PAIRS = [("INPUT.INTERPOLATION", "bilinear", False), ("DATALOADER.TEST.BATCH_SIZE", "7", False),
         ("DATASET.SUBSAMPLE_CLASSES", "new", False), ("INPUT.PIXEL_MEAN", "[0.4, 0.4, 0.4]", False),
         ("DATASET.SKIP_CORRUPT", "True", False), ("TEST.PREC", "bf16", False),
         ("TRAINER.MMRL.ALPHA", "0.3", True), ("TASK", "CD", True), ("SEED", "2", True),
         ("TEST.SAVE_LOGITS", "False", True)]


@pytest.mark.parametrize("key, value, shared", PAIRS, ids=[k for k, _, _ in PAIRS])
def test_two_evaluations_that_differ_in_one_key_get_their_own_pass_results(data, trained, tmp_path, passes,
                                                                            key, value, shared):
    runs = {name: eval_argv(data, trained, tmp_path / name, "MMRL", opts)
            for name, opts in (("a", ()), ("b", (key, value)), ("a_alone", ()), ("b_alone", (key, value)))}
    assert quiet(main_many, [runs["a"], runs["b"]]) == [0, 0]
    assert passes == ([["MMRL", "MMRL"]] if shared else [["MMRL"], ["MMRL"]])
    for name in ("a", "b"):
        assert quiet(run_main, runs[f"{name}_alone"]) == 0
        assert same_predictions(predictions(tmp_path / name), predictions(tmp_path / f"{name}_alone"))


@pytest.mark.slow
def test_every_method_in_one_eval_many_equals_its_own_evaluation(data, trained, tmp_path, passes):
    """Methods share the frozen backbone object in one process: none may change it for the others."""
    names = list(CONFIGS)
    for name in names:
        assert quiet(run_main, eval_argv(data, trained, tmp_path / "alone" / name, name)) == 0
    for order in (names, names[::-1]):
        passes.clear()
        out = tmp_path / "_".join(order[:1])
        assert quiet(main_many, [eval_argv(data, trained, out / n, n) for n in order]) == [0] * len(order)
        assert max(len(p) for p in passes) > 2  # the trained methods really shared a pass
        for name in order:
            assert same_predictions(predictions(out / name), predictions(tmp_path / "alone" / name)), name
