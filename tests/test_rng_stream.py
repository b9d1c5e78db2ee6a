"""The random streams of a training run, seed for seed as in the authors' trainer.

Expected values are derived here from the documented consumption order
(docs/protocol.md#the-random-streams-of-a-run: seeding, few-shot sampling, two
authors'-format CLIP constructions with the trainable projection inside the first, the
representation learner, then per epoch a worker base seed, a sampler seed and per-sample
crop/flip draws) with plain random/torch calls, and compared with what the Trainer actually
produced.
"""
import json
import os
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from mmrl.clip import backbone
from mmrl.data.testcache import prepare_test_cache
from mmrl.data.transforms import build_test_transform
from mmrl.datasets import build_dataset
from mmrl.datatools.synthetic import write_synthetic_dataset
from mmrl.engine.run import main as run_main
from mmrl.models.init_order import ClipDims, reference_initial_state
from mmrl.models.mmrl import ArchSpec, MultiModalRepresentationLearner
from engine_helpers import final_state
from fixtures_data import mmrl_cfg

REPO = Path(__file__).resolve().parents[1]
VIT_B16 = ClipDims(vision_width=768, vision_layers=12, patch_size=16, grid=14, text_width=512, text_layers=12,
                   vocab_size=49408, context_length=77, embed_dim=512)
MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def global_states():
    return random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()


def assert_untouched(before):
    py, npy, tch = before
    assert random.getstate() == py
    assert np.array_equal(np.random.get_state()[1], npy)
    assert torch.equal(torch.get_rng_state(), tch)


# -- nothing outside the protocol draws from the global streams ------------------------------

def test_building_the_test_cache_draws_nothing(tmp_path):
    root = tmp_path / "data"
    write_synthetic_dataset("eurosat", root, n_classes=2, n_per_class=5)
    data = build_dataset("EuroSAT", root)
    tf = build_test_transform(mmrl_cfg())
    torch.manual_seed(1)
    before = global_states()
    built = prepare_test_cache(data.test, tf, tmp_path / "cache", name="EuroSAT", dataset_dir=data.dataset_dir)
    assert built is not None and built.built
    assert_untouched(before)
    reused = prepare_test_cache(data.test, tf, tmp_path / "cache", name="EuroSAT", dataset_dir=data.dataset_dir)
    assert reused is not None and not reused.built
    assert_untouched(before)


@pytest.mark.parametrize("name", ["tiny-test", "demo-tiny"])
def test_loading_a_backbone_draws_nothing(name):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    before = global_states()
    backbone.load_backbone(name)
    assert_untouched(before)


# -- the re-enacted build_model draws, against the measured check values ------------------

def next_int64() -> int:
    return int(torch.empty((), dtype=torch.int64).random_().item())


@pytest.mark.parametrize("trainer, rep_dim, seed, base_seed, sampler_seed, perm", [
    ("MMRL", 2048, 1, 7311675866733669844, 5576646598675471830, [49, 64, 43, 62, 14, 24, 52, 27]),
    ("MMRL", 2048, 2, 1425270594479517627, 4694553022110532606, [52, 44, 37, 36, 67, 62, 2, 56]),
    ("MMRL", 2048, 3, 4518689692150669767, 8059195609526541609, [53, 76, 40, 59, 14, 27, 43, 37]),
    ("MMRL", 512, 1, 8627391191391115633, 2239113025055800988, [48, 44, 13, 55, 15, 41, 11, 10]),
    ("MMRLpp", 512, 1, 4850031067208433296, 3382084862630250187, [63, 20, 3, 0, 39, 78, 66, 26]),
])
@pytest.mark.slow
def test_vit_b16_build_draws_give_the_reference_epoch_seeds(trainer, rep_dim, seed, base_seed, sampler_seed, perm):
    torch.manual_seed(seed)
    reference_initial_state(ArchSpec(trainer=trainer, rep_dim=rep_dim), VIT_B16)
    assert next_int64() == base_seed
    got_sampler_seed = next_int64()
    assert got_sampler_seed == sampler_seed
    g = torch.Generator()
    g.manual_seed(got_sampler_seed)
    assert torch.randperm(80, generator=g)[:8].tolist() == perm


def skip_words(n: int, chunk: int = 1 << 24) -> None:
    """Advance the MT19937 stream by n 32-bit words (float32 uniform_ takes one per element)."""
    while n > 0:
        torch.empty(min(n, chunk)).uniform_()
        n -= chunk


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_vit_b16_projection_is_drawn_inside_the_first_build(trainer):
    """proj_rep / A follow 86,125,056 words of build #1 (conv1 .. visual proj)."""
    torch.manual_seed(1)
    state = reference_initial_state(ArchSpec(trainer=trainer, rep_dim=512), VIT_B16)
    torch.manual_seed(1)
    skip_words(86_125_056)
    if trainer == "MMRL":
        expected, got = 768 ** -0.5 * torch.randn(768, 512), state["image_encoder.proj_rep"]
    else:
        expected, got = torch.empty(768, 64).uniform_(-1 / 8, 1 / 8), state["image_encoder.A"]
        assert torch.equal(state["image_encoder.B"], torch.zeros(64, 512))
    assert torch.equal(got, expected)


def test_clip_dims_of_an_open_clip_vit_b16(vitb16_clip):
    assert ClipDims.of(vitb16_clip) == VIT_B16


# -- a training run against the documented order, derived step by step ------------------------

@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    # non-square images: crop parameters depend on width and height separately
    write_synthetic_dataset("eurosat", root, n_per_class=20, image_size=(44, 36))
    return root


def run_argv(root, out, trainer="MMRL", seed=1, epochs=1, workers=0, opts=()):
    return ["--root", str(root), "--seed", str(seed), "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"),
            "--config-file", str(REPO / f"configs/trainers/{trainer}/vit_b16.yaml"),
            "--output-dir", str(out),
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "TASK", "B2N",
            "DATASET.FEWSHOT_DIR", str(Path(out).parent / "fewshot"), "OPTIM.MAX_EPOCH", str(epochs),
            "MODEL.BACKBONE.NAME", "tiny-test", "DATALOADER.NUM_WORKERS", str(workers),
            "DATALOADER.TEST.BATCH_SIZE", "64", *opts]


# no test pass; every step calls forward_train (a replayed CUDA graph would not)
RECORDED = ["TEST.NO_TEST", "True", "TEST.CACHE_DIR", "none", "TRAIN.CUDA_GRAPH", "False"]


class Recorder:
    """What reached the model: the trainables before the first step, and each step's inputs."""

    def __init__(self, monkeypatch):
        self.initial = None
        self.model = None
        self.inputs = []
        self.paths = []
        real_forward = MultiModalRepresentationLearner.forward_train
        recorder = self

        def forward_train(model, images, labels):
            if recorder.initial is None:
                recorder.model = model
                recorder.initial = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            recorder.inputs.append(images.detach().cpu().clone())
            return real_forward(model, images, labels)
        monkeypatch.setattr(MultiModalRepresentationLearner, "forward_train", forward_train)

        from mmrl.data import loaders
        real_read = loaders.read_image

        def read_image(path):
            recorder.paths.append(path)
            return real_read(path)
        monkeypatch.setattr(loaders, "read_image", read_image)


def reference_train_x(root: Path, seed: int, shots: int) -> list[str]:
    """docs/protocol.md#few-shot-subsets: seed Python's RNG, one random.sample per class in tracker order
    (train, then val with min(K, 4)), then keep the base half of the sorted labels."""
    random.seed(seed)
    split = json.loads((root / "eurosat" / "split_zhou_EuroSAT.json").read_text())

    def fewshot(rows, k):
        groups = {}
        for row in rows:
            groups.setdefault(row[1], []).append(row)
        return [r for g in groups.values() for r in (random.sample(g, k) if len(g) >= k else g)]
    train = fewshot(split["train"], shots)
    fewshot(split["val"], min(shots, 4))
    labels = sorted({r[1] for r in train})
    base = set(labels[:math.ceil(len(labels) / 2)])
    return [str(root / "eurosat" / "2750" / r[0]) for r in train if r[1] in base]


def authors_dims(clip) -> dict:
    """What the authors' build_model reads from a ViT state dict."""
    sd = clip.state_dict()
    def blocks(prefix):
        return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})
    dv, _, p, _ = sd["visual.conv1.weight"].shape
    return dict(dv=dv, p=p, grid=round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5),
                lv=blocks("visual.transformer.resblocks."), dt=sd["ln_final.weight"].shape[0],
                lt=blocks("transformer.resblocks."), vocab=sd["token_embedding.weight"].shape[0],
                ctx=sd["positional_embedding"].shape[0], e=sd["text_projection"].shape[1])


def kaiming_bound(fan_in: int, a: float = math.sqrt(5)) -> float:
    """Kaiming-uniform's bound, sqrt(3) * gain / sqrt(fan_in), with the leaky-ReLU gain for a."""
    return math.sqrt(3.0) * (math.sqrt(2.0 / (1 + a ** 2)) / math.sqrt(fan_in))


def replay_build_model(spec: ArchSpec, d: dict) -> dict[str, torch.Tensor]:
    """Two authors'-format CLIP builds (the projection kept from the first), then the learner."""
    dv, dt, e = d["dv"], d["dt"], d["e"]

    def block(w):
        return [("u", w * w), ("u", w), ("u", 3 * w * w), ("u", 4 * w * w), ("u", 4 * w), ("u", 4 * w * w), ("u", w)]
    build = [("u", dv * 3 * d["p"] ** 2), ("n", dv), ("n", (d["grid"] ** 2 + 1) * dv), *block(dv) * d["lv"],
             ("n", dv * e), "projection", *block(dt) * d["lt"], ("n", d["vocab"] * dt), ("n", d["vocab"] * dt),
             ("n", d["ctx"] * dt), *[("n", k * dt * dt) for k in (3, 1, 4, 4)] * d["lt"], ("n", dt * e)]
    kept = []
    for _ in range(2):
        for event in build:
            if event == "projection":
                if spec.trainer == "MMRL":
                    kept.append(dv ** -0.5 * torch.randn(dv, e))
                else:
                    kept.append(torch.empty(dv, spec.proj_lora_dim).uniform_(-kaiming_bound(spec.proj_lora_dim),
                                                                              kaiming_bound(spec.proj_lora_dim)))
            else:
                op, n = event
                scratch = torch.empty(n)
                scratch.uniform_() if op == "u" else scratch.normal_()
    r, n_layers = spec.rep_dim, len(spec.rep_layers)
    tokens = torch.empty(spec.n_rep_tokens, r).normal_(0, 0.02)
    lin = {}
    for side, width in (("v", dv), ("t", dt)):
        w = torch.empty(width, r).uniform_(-kaiming_bound(r), kaiming_bound(r))
        lin[side] = (w, torch.empty(width).uniform_(-1 / math.sqrt(r), 1 / math.sqrt(r)))
    out = {"representation_learner.compound_rep_tokens": tokens}
    if spec.trainer == "MMRL":
        out["image_encoder.proj_rep"] = kept[0]
        for side, (w, b) in lin.items():
            for i in range(n_layers):
                out[f"representation_learner.compound_rep_tokens_r2{side}proj.{i}.weight"] = w
                out[f"representation_learner.compound_rep_tokens_r2{side}proj.{i}.bias"] = b
        return out
    out["image_encoder.A"] = kept[0]
    out["image_encoder.B"] = torch.zeros(spec.proj_lora_dim, e)
    k, bound = spec.res_lora_dim, kaiming_bound(spec.res_lora_dim)
    a = {side: [torch.empty(width, k).uniform_(-bound, bound) for _ in range(n_layers)]
         for side, width in (("v", dv), ("t", dt))}
    for side, (w, b) in lin.items():
        out[f"representation_learner.srra_r2{side}proj.weight"] = w
        for i in range(n_layers):
            out[f"representation_learner.srra_r2{side}proj.srra.{i}.A"] = a[side][i]
            out[f"representation_learner.srra_r2{side}proj.srra.{i}.B"] = torch.zeros(k, r)
            out[f"representation_learner.srra_r2{side}proj.srra.{i}.bias"] = b
    return out


def crop_and_flip(width: int, height: int, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)):
    """On the current torch stream: RandomResizedCrop attempts, then the flip."""
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        area = width * height * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = torch.randint(0, height - h + 1, size=(1,)).item()
            left = torch.randint(0, width - w + 1, size=(1,)).item()
            crop = (top, left, h, w)
            break
    else:  # never reached with these images and scales; the fallback draws nothing
        raise AssertionError("centre-crop fallback: extend the oracle")
    return crop, torch.rand(1).item() < 0.5


def model_input(path: str, crop, flip: bool, size: int = 224) -> torch.Tensor:
    img = Image.open(path).convert("RGB")
    img = TF.resized_crop(img, *crop, [size, size], InterpolationMode.BICUBIC, antialias=True)
    if flip:
        img = TF.hflip(img)
    return TF.normalize(TF.to_tensor(img), MEAN, STD)


def epoch_batches(train_x: list[str], batch: int) -> tuple[int, list[list[str]]]:
    """An epoch's iterator: base seed, then sampler seed -> private randperm; drop_last batches."""
    base_seed = next_int64()
    g = torch.Generator()
    g.manual_seed(next_int64())
    perm = torch.randperm(len(train_x), generator=g).tolist()
    return base_seed, [[train_x[i] for i in perm[b * batch:(b + 1) * batch]] for b in range(len(train_x) // batch)]


@pytest.mark.slow
@pytest.mark.parametrize("trainer, interrupted", [("MMRL", False), ("MMRLpp", False), ("MMRL", True)])
def test_run_follows_the_documented_stream(data_root, tmp_path, monkeypatch, trainer, interrupted):
    """Initial trainables, the images of every step and their crops and flips; a run killed
    after epoch 1 and resumed continues the same stream."""
    seed, shots, batch, epochs = 2, 4, 4, 2
    rec = Recorder(monkeypatch)
    argv = run_argv(data_root, tmp_path / "run", trainer, seed=seed, epochs=epochs,
                    opts=RECORDED)
    if interrupted:
        monkeypatch.setenv("MMRL_FAULT_AFTER_EPOCH", "1")
        assert run_main(argv) != 0
        monkeypatch.delenv("MMRL_FAULT_AFTER_EPOCH")
    assert run_main(argv) == 0
    assert ("Found checkpoint at" in (tmp_path / "run" / "log.txt").read_text()) == interrupted

    train_x = reference_train_x(data_root, seed, shots)
    torch.manual_seed(seed)
    expected = replay_build_model(rec.model.spec, authors_dims(rec.model.clip))
    assert rec.initial.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(rec.initial[name], value), name

    steps, reads = [], []
    for _ in range(epochs):
        _, batches = epoch_batches(train_x, batch)
        for paths in batches:
            sizes = [Image.open(p).size for p in paths]
            steps.append([model_input(p, *crop_and_flip(*wh)) for p, wh in zip(paths, sizes)])
            reads += paths
    assert rec.paths == reads  # every image of both epochs, in order
    assert len(rec.inputs) == len(steps)
    for step, (got, want) in enumerate(zip(rec.inputs, steps)):
        assert torch.equal(got, torch.stack(want)), f"step {step + 1}"


@pytest.mark.slow
def test_workers_get_the_documented_seeds(data_root, tmp_path, monkeypatch):
    """With W workers, worker w is seeded with base_seed + w and does batches w, w + W, ...;
    the main stream draws only each epoch's two seeds, and workers are reseeded every epoch."""
    seed, workers, epochs = 1, 2, 2
    rec = Recorder(monkeypatch)
    assert run_main(run_argv(data_root, tmp_path / "run", seed=seed, workers=workers, epochs=epochs,
                             opts=RECORDED)) == 0
    train_x = reference_train_x(data_root, seed, 4)
    torch.manual_seed(seed)
    replay_build_model(rec.model.spec, authors_dims(rec.model.clip))
    step = 0
    for _ in range(epochs):
        base_seed, batches = epoch_batches(train_x, 4)
        main_stream = torch.get_rng_state()
        worker_states = []
        for w in range(workers):
            torch.manual_seed(base_seed + w)
            worker_states.append(torch.get_rng_state())
        for b, paths in enumerate(batches):
            torch.set_rng_state(worker_states[b % workers])
            want = torch.stack([model_input(p, *crop_and_flip(*Image.open(p).size)) for p in paths])
            worker_states[b % workers] = torch.get_rng_state()
            assert torch.equal(rec.inputs[step], want), f"step {step + 1}"
            step += 1
        torch.set_rng_state(main_stream)
    assert len(rec.inputs) == step


# -- the same seed trains the same model, whatever was cached before --------------------------

@pytest.mark.slow
def test_fresh_and_reused_caches_train_the_same_model(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(backbone, "_SHARED", {})  # the first run builds the backbone, the second reuses it
    cache = tmp_path / "testcache"
    runs = [tmp_path / "first", tmp_path / "second"]
    for out in runs:
        assert run_main(run_argv(data_root, out, opts=["TEST.CACHE_DIR", str(cache)])) == 0
    logs = [(out / "log.txt").read_text() for out in runs]
    assert "Test image cache: decoded" in logs[0] and "Test image cache: reusing" in logs[1]
    a, b = (final_state(out) for out in runs)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture
def restore_cuda_flags():
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_deterministic_cuda_runs_are_identical(data_root, tmp_path, monkeypatch, restore_cuda_flags):
    monkeypatch.setenv("MMRL_DETERMINISTIC", "1")
    runs = [tmp_path / "first", tmp_path / "second"]
    for out in runs:
        assert run_main(run_argv(data_root, out, epochs=2, opts=["TEST.NO_TEST", "True"])) == 0
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    a, b = (final_state(out) for out in runs)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_deterministic_switch(monkeypatch, restore_cuda_flags):
    from mmrl.utils.rng import configure_cuda, deterministic_requested
    monkeypatch.delenv("MMRL_DETERMINISTIC", raising=False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # restored (unset) after the test
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    assert not deterministic_requested()
    configure_cuda(deterministic_requested())
    assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    monkeypatch.setenv("MMRL_DETERMINISTIC", "1")
    assert deterministic_requested()
    configure_cuda(deterministic_requested())
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


# -- seeding, resume state, crop fallback ----------------------------------------------------------

def test_seed_everything_seeds_each_generator_with_the_seed():
    """rng.md §2.1: random.seed(S), np.random.seed(S), torch.manual_seed(S), CUDA seed_all(S)."""
    from mmrl.engine.trainer import seed_everything
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    seed_everything(5)
    assert random.random() == random.Random(5).random()
    assert np.random.rand() == np.random.RandomState(5).rand()
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    assert torch.initial_seed() == 5
    if torch.cuda.is_available():
        assert torch.cuda.initial_seed() == 5


def test_resume_state_restores_python_numpy_and_torch():
    """A resume file's rng state puts every generator the rest of the run may use back where it was."""
    from mmrl.engine.trainer import rng_state, set_rng_state
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    random.random(), np.random.rand(), torch.rand(1)
    saved = rng_state()

    def draws():
        return random.random(), np.random.rand(4).tolist(), torch.rand(4).tolist(), next_int64()
    first = draws()
    random.seed(8), np.random.seed(8), torch.manual_seed(8)
    set_rng_state(saved)
    assert draws() == first


def test_crop_fallback_draws_two_uniforms_per_attempt_and_no_randint():
    """rng.md §2.5.4: when all 10 RandomResizedCrop attempts fail, a centre crop is taken with no
    randint; then the flip draws one rand. A 200 x 10 image fails every attempt at scale >= 0.5."""
    from mmrl.data.transforms import build_train_transform
    tf = build_train_transform(mmrl_cfg())
    img = Image.new("RGB", (200, 10), (10, 20, 30))
    torch.manual_seed(6)
    tf(img)
    after = torch.get_rng_state()
    torch.manual_seed(6)
    for _ in range(10):
        torch.empty(1).uniform_()   # area fraction
        torch.empty(1).uniform_()   # log aspect ratio
    torch.rand(1)                   # the flip
    assert torch.equal(after, torch.get_rng_state())


# -- baselines: nothing draws outside their build and the documented data stream -------------------

BASELINE_CONFIGS = {
    "CoOp": "CoOp/vit_b16_ep50.yaml",
    "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1.yaml",
    "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv1.yaml",
    "IVLP": "IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml",
    "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
}


def baseline_initial_state(trainer: str, t) -> dict[str, torch.Tensor]:
    """The method's build-time draws on the current stream, for the run of Trainer ``t`` (their
    order is the method's own, documented with each function, not rng.md's)."""
    prec = t.method.precision(t.cfg)
    if trainer in ("CoOp", "CoCoOp", "KgCoOp"):
        from mmrl.models import coop as cp
        from mmrl.models.coop_official import official_initial_state
        return official_initial_state(cp.PromptArch.from_cfg(t.cfg), t.model.clip, len(t.data.classnames), prec)
    from mmrl.models.deep_prompts_init import reference_initial_state as deep_initial_state
    return deep_initial_state(t.model, prec=prec)


@pytest.mark.parametrize("trainer", list(BASELINE_CONFIGS))  # about 0.6 s each
def test_baseline_run_draws_only_its_build_and_the_data_stream(data_root, tmp_path, monkeypatch, trainer):
    """rng.md §2.4(e), §2.5 and §5.5 for the baselines: after seeding, the few-shot draws (Python)
    and the method's build draws (torch), nothing draws until each epoch's iterator takes its base
    seed and sampler seed; with 0 workers every sample's crop and flip follow on the main stream."""
    from mmrl.data import loaders
    from mmrl.engine import trainer as engine_trainer
    seed, batch, epochs = 2, 4, 2
    seen, paths = {}, []
    real_train, real_read = engine_trainer.Trainer.train, loaders.read_image

    def train(self):
        seen["trainer"] = self
        seen["initial"] = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return real_train(self)

    def read_image(path):
        paths.append(path)
        return real_read(path)
    monkeypatch.setattr(engine_trainer.Trainer, "train", train)
    monkeypatch.setattr(loaders, "read_image", read_image)
    out = tmp_path / "run"
    argv = ["--root", str(data_root), "--seed", str(seed), "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"),
            "--config-file", str(REPO / "configs/trainers" / BASELINE_CONFIGS[trainer]), "--output-dir", str(out),
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "TASK", "B2N",
            "DATASET.FEWSHOT_DIR", str(tmp_path / "fewshot"), "OPTIM.MAX_EPOCH", str(epochs),
            "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch), "MODEL.BACKBONE.NAME", "tiny-test",
            "DATALOADER.NUM_WORKERS", "0", *RECORDED]
    assert run_main(argv) == 0

    t = seen["trainer"]
    train_x = reference_train_x(data_root, seed, 4)
    torch.manual_seed(seed)
    expected = baseline_initial_state(trainer, t)
    assert expected, trainer
    for name, value in expected.items():
        assert torch.equal(seen["initial"][name], value), name
    reads, scale = [], tuple(t.cfg.INPUT.RRCROP_SCALE)  # Dassl's (0.08, 1) in the baselines' configs
    for _ in range(epochs):
        _, batches = epoch_batches(train_x, batch)
        for step in batches:
            for p in step:
                crop_and_flip(*Image.open(p).size, scale=scale)
                reads.append(p)
    assert paths == reads
