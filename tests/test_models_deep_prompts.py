"""IVLP, MaPLe and PromptSRC compute spec baselines.md §5-§7; the fast path equals the reference."""
import ast

import pytest
import torch
import torch.nn.functional as F

import mmrl.models.deep_prompts as dp
from mmrl.errors import ConfigError
from mmrl.models.deep_prompts import (DeepPromptArch, DeepPromptBehaviour, build_deep_prompt_model,
                                      phrase_context)
from mmrl.models.deep_prompts_reference import ReferenceDeepPrompts
from mmrl.models.mmrl import count_parameters
from mmrl.models.prompts import tokenize
from mmrl.models.promptsrc_templates import PROMPTSRC_TEMPLATES
from step_compare import assert_train_step_matches

CLASSES = ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Sea_or_Lake"]


def make(clip, trainer="IVLP", classes=CLASSES, **arch):
    torch.manual_seed(1)
    return build_deep_prompt_model(DeepPromptArch(trainer=trainer, backbone="tiny-test", **arch), clip, classes,
                                   DeepPromptBehaviour(text_loss_weight=25.0, image_loss_weight=10.0))


def perturb(model, scale=0.05):
    """Move every trainable tensor off its init (identical copies would hide indexing bugs)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def images(n=3, seed=5):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def compare_with_reference(model, imgs, labels, tol=1e-4):
    ref = ReferenceDeepPrompts(model)
    assert_train_step_matches(model, ref, imgs, labels, tol)
    model.eval()
    for _ in range(2):  # the second call reads the cached eval text features
        assert (model.forward_eval(imgs)["class"] - ref.logits(imgs)[0]).abs().max().item() < tol


# tiny-test has 12 layers per tower; depths chosen to cover first-only, partial and full depth
CASES = [
    ("IVLP", dict(n_ctx_text=2, n_ctx_vision=3, depth_text=5, depth_vision=4)),
    ("IVLP", dict(n_ctx_text=2, n_ctx_vision=2, depth_text=12, depth_vision=12)),
    ("IVLP", dict(n_ctx_text=4, n_ctx_vision=0, depth_text=12, depth_vision=0)),   # language only
    ("IVLP", dict(n_ctx_text=6, n_ctx_vision=1, depth_text=1, depth_vision=1, ctx_init="")),
    ("MaPLe", dict(n_ctx_text=2, n_ctx_vision=2, depth_text=9, depth_vision=9)),
    ("MaPLe", dict(n_ctx_text=3, n_ctx_vision=3, depth_text=1, depth_vision=1)),
    ("MaPLe", dict(n_ctx_text=2, n_ctx_vision=2, depth_text=12, depth_vision=12)),
    ("PromptSRC", dict(n_ctx_text=4, n_ctx_vision=4, depth_text=9, depth_vision=9)),
    ("PromptSRC", dict(n_ctx_text=2, n_ctx_vision=3, depth_text=3, depth_vision=12)),
]


@pytest.mark.parametrize("trainer,arch", CASES)
def test_fast_equals_reference_tiny(tiny_clip, trainer, arch):
    model = make(tiny_clip, trainer, **arch)
    perturb(model)
    compare_with_reference(model, images(), torch.tensor([0, 3, 4]))


@pytest.mark.slow
@pytest.mark.parametrize("trainer,arch", [
    ("IVLP", dict(n_ctx_text=2, n_ctx_vision=2, depth_text=12, depth_vision=12)),
    ("MaPLe", dict(n_ctx_text=2, n_ctx_vision=2, depth_text=9, depth_vision=9)),
    ("PromptSRC", dict(n_ctx_text=4, n_ctx_vision=4, depth_text=9, depth_vision=9)),
])
def test_fast_equals_reference_vitb16_size(vitb16_clip, trainer, arch):
    """The B2N settings at ViT-B/16 dimensions (random weights)."""
    torch.manual_seed(1)
    model = build_deep_prompt_model(DeepPromptArch(trainer=trainer, **arch), vitb16_clip, CLASSES)
    perturb(model, 0.02)
    compare_with_reference(model, images(2, seed=6), torch.tensor([1, 4]))


@pytest.mark.parametrize("trainer", ["IVLP", "MaPLe", "PromptSRC"])
def test_length_groups_equal_reference(tiny_clip, monkeypatch, trainer):
    """Prompts of very different lengths in several groups give the reference's features."""
    monkeypatch.setattr(dp, "TEXT_GROUP_SIZE", 2)
    classes = ["a", "a much longer class name with many words", "b c", "tiny", "x y z w", "q"]
    model = make(tiny_clip, trainer, classes=classes, n_ctx_text=2, n_ctx_vision=2, depth_text=4, depth_vision=4)
    perturb(model)
    assert len(model._plan(model.prompts, "classes").groups) == 3
    compare_with_reference(model, images(2), torch.tensor([1, 5]))


# -- the prompt skeleton ----------------------------------------------------------------------

def test_only_the_first_n_ctx_words_of_the_phrase_are_learnable(tiny_clip):
    model = make(tiny_clip, "IVLP", n_ctx_text=2)
    assert model.prompts.texts[1] == "a photo of a Forest."
    ids = tokenize(["a photo of a"])[0]
    emb = tiny_clip.token_embedding.weight
    assert torch.equal(model.ctx.detach(), emb[ids[1:3]])        # "a", "photo"
    # "of a" stay fixed tokens at positions 3, 4, right after the two context slots
    fixed = model._embedded()[1]
    pos = tiny_clip.positional_embedding
    assert torch.allclose(fixed[3:5], emb[ids[3:5]] + pos[3:5])
    # they matter: the same context without them ("a photo Forest.") gives other features
    short = make(tiny_clip, "IVLP", n_ctx_text=2, ctx_init="a photo")
    short.load_state_dict(model.state_dict())
    w, w_short = model.eval_text_features(), short.eval_text_features()
    assert (w - w_short).abs().max() > 1e-3


def test_whole_phrase_learnable_at_n_ctx_4_and_random_beyond(tiny_clip):
    four = make(tiny_clip, "PromptSRC", n_ctx_text=4, n_ctx_vision=4)
    ids = tokenize(["a photo of a"])[0]
    assert torch.equal(four.ctx.detach(), tiny_clip.token_embedding.weight[ids[1:5]])
    five = make(tiny_clip, "IVLP", n_ctx_text=5)
    assert five.prompts.texts[1] == "X X X X X Forest."
    assert phrase_context(tiny_clip, five.spec) is None and 0.01 < five.ctx.std().item() < 0.03
    with pytest.raises(ConfigError, match="CTX_INIT 'a photo' has 2 tokens"):
        make(tiny_clip, "IVLP", n_ctx_text=3, ctx_init="a photo")
    with pytest.raises(ConfigError, match="PROMPT_DEPTH_TEXT is 13"):
        make(tiny_clip, "IVLP", depth_text=13)
    with pytest.raises(ConfigError, match="equal"):
        make(tiny_clip, "MaPLe", n_ctx_text=2, n_ctx_vision=3)


def _capture_block_inputs(blocks, layers):
    seen, handles = {}, []
    for layer in layers:
        def hook(mod, args, kwargs, layer=layer):
            seen[layer] = (args[0] if args else kwargs["q_x"]).detach().clone()
        handles.append(blocks[layer - 1].register_forward_pre_hook(hook, with_kwargs=True))
    return seen, handles


@pytest.mark.parametrize("trainer", ["IVLP", "MaPLe"])
def test_deep_prompts_replace_tokens_in_both_towers(tiny_clip, trainer):
    n, depth = 2, 5
    model = make(tiny_clip, trainer, n_ctx_text=n, n_ctx_vision=n, depth_text=depth, depth_vision=depth)
    perturb(model)
    text_tokens, vision_tokens = model.prompt_tokens()
    layers = range(2, 9)
    seen_t, h1 = _capture_block_inputs(tiny_clip.transformer.resblocks, layers)
    seen_v, h2 = _capture_block_inputs(tiny_clip.visual.transformer.resblocks, layers)
    try:
        with torch.no_grad():
            model.forward_train(images(2), torch.tensor([0, 1]))
    finally:
        for h in h1 + h2:
            h.remove()
    t_len = model.prompts.max_len
    n_patches = tiny_clip.visual.positional_embedding.shape[0]
    for layer in layers:
        t, v = seen_t[layer], seen_v[layer]
        assert t.shape[1] == t_len and v.shape[1] == n_patches + n  # nothing appended after layer 1
        if layer <= depth:
            assert torch.equal(t[:, 1:1 + n], text_tokens[layer - 1].expand(t.shape[0], -1, -1))
            assert torch.equal(v[:, -n:], vision_tokens[layer - 1].expand(v.shape[0], -1, -1))
        else:  # beyond the depth the prompt rows carry the previous layer's outputs
            assert not torch.allclose(t[:, 1:1 + n], text_tokens[depth - 1].expand(t.shape[0], -1, -1))
            assert not torch.allclose(v[:, -n:], vision_tokens[depth - 1].expand(v.shape[0], -1, -1))


def test_maple_vision_prompts_are_linear_maps_of_the_text_prompts(tiny_clip):
    model = make(tiny_clip, "MaPLe", n_ctx_text=2, n_ctx_vision=2, depth_text=4, depth_vision=4)
    perturb(model)
    text, vision = model.prompt_tokens()
    assert torch.allclose(vision[0], model.ctx @ model.proj.weight.t() + model.proj.bias)
    for i in range(3):
        lin = model.compound_prompt_projections[i]
        assert torch.allclose(vision[i + 1], text[i + 1] @ lin.weight.t() + lin.bias)
    with torch.no_grad():
        model.compound_prompts_text[1].add_(1.0)
    _, after = model.prompt_tokens()
    changed = [not torch.equal(a, b) for a, b in zip(vision, after)]
    assert changed == [False, False, True, False]  # only layer 3's vision prompt follows layer 3's text prompt


# -- PromptSRC --------------------------------------------------------------------------------

def test_promptsrc_templates():
    assert len(PROMPTSRC_TEMPLATES) == len(set(PROMPTSRC_TEMPLATES)) == 60
    assert PROMPTSRC_TEMPLATES[0] == "a photo of a {}." and PROMPTSRC_TEMPLATES[-1] == "itap of the {}."
    assert all(t.count("{}") == 1 for t in PROMPTSRC_TEMPLATES)


def test_promptsrc_frozen_text_features_are_the_template_ensemble(tiny_clip, monkeypatch):
    monkeypatch.setattr(dp, "TEXT_GROUP_SIZE", 64)  # several length groups across templates
    model = make(tiny_clip, "PromptSRC", n_ctx_text=4, n_ctx_vision=4)
    names = [c.replace("_", " ") for c in CLASSES]
    with torch.no_grad():
        want = torch.stack([tiny_clip.encode_text(tokenize([t.format(n) for n in names]))
                            for t in PROMPTSRC_TEMPLATES]).mean(dim=0)
    got = model.ensemble_text_features()
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).abs().max() < 1e-5
    # the single-template features differ: the ensemble is not one template
    assert (want - tiny_clip.encode_text(tokenize([f"a photo of a {n}." for n in names]))).abs().max() > 1e-3


def test_promptsrc_losses_by_hand(tiny_clip):
    model = make(tiny_clip, "PromptSRC", n_ctx_text=4, n_ctx_vision=4)
    model.behaviour = DeepPromptBehaviour(text_loss_weight=3.0, image_loss_weight=0.5)
    g = torch.Generator().manual_seed(0)
    unit = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=-1)
    f, gz, w, fixed = unit(4, 32), unit(4, 32), unit(5, 32), unit(5, 32)
    logits, zs_logits = 14.0 * f @ w.t(), 14.0 * gz @ fixed.t()
    y = torch.tensor([0, 1, 2, 4])
    loss, _, parts = model.loss_from_features(logits, zs_logits, w, fixed, f, gz, y)
    p, p0 = logits.softmax(1), zs_logits.softmax(1)
    kl = (p0 * (p0.log() - p.log())).sum() / (4 * 5)          # summed KL over B*C logits
    l1_text = 3.0 * (w - fixed).abs().sum() / (5 * 32)
    l1_image = 0.5 * (f - gz).abs().sum() / (4 * 32)
    ce = -(logits.log_softmax(1)[torch.arange(4), y]).mean()
    assert torch.allclose(parts["kl"], kl, atol=1e-6) and torch.allclose(parts["ce"], ce, atol=1e-6)
    assert torch.allclose(parts["l1_text"], l1_text) and torch.allclose(parts["l1_image"], l1_image)
    assert torch.allclose(loss, ce + kl + l1_text + l1_image, atol=1e-6)


def test_promptsrc_zero_shot_branch_uses_frozen_clip_without_graph(tiny_clip):
    model = make(tiny_clip, "PromptSRC", n_ctx_text=4, n_ctx_vision=4)
    imgs = images(2)
    g = model.zero_shot_image_features(model.image_stem(imgs))
    assert not g.requires_grad
    with torch.no_grad():
        assert (g - F.normalize(tiny_clip.encode_image(imgs), dim=-1)).abs().max() < 1e-5


# -- shapes, counts, state ----------------------------------------------------------------------

def test_state_dict_holds_learned_tensors_only(tiny_clip):
    for trainer in ("IVLP", "MaPLe", "PromptSRC"):
        model = make(tiny_clip, trainer, n_ctx_text=2, n_ctx_vision=2, depth_text=3, depth_vision=3)
        loss, _, _ = model.forward_train(images(2), torch.tensor([0, 1]))
        loss.backward()
        assert all(p.grad is None for p in tiny_clip.parameters())
        assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}
        assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("trainer,arch,count", [
    ("IVLP", dict(n_ctx_text=2, n_ctx_vision=2, depth_text=12, depth_vision=12), 30_720),
    ("IVLP", dict(n_ctx_text=4, n_ctx_vision=4, depth_text=9, depth_vision=9), 46_080),
    ("IVLP", dict(n_ctx_text=4, n_ctx_vision=0, depth_text=12, depth_vision=0), 24_576),
    ("MaPLe", dict(n_ctx_text=2, n_ctx_vision=2, depth_text=9, depth_vision=9), 3_555_072),
    ("MaPLe", dict(n_ctx_text=2, n_ctx_vision=2, depth_text=3, depth_vision=3), 1_185_024),
    ("PromptSRC", dict(n_ctx_text=4, n_ctx_vision=4, depth_text=9, depth_vision=9), 46_080),
    ("PromptSRC", dict(n_ctx_text=4, n_ctx_vision=4, depth_text=3, depth_vision=3), 15_360),
])
def test_trainable_counts_at_vitb16(vitb16_clip, trainer, arch, count):
    """The spec's counts (§5.1, §6.1, §7.1) for ViT-B/16 dimensions."""
    model = build_deep_prompt_model(DeepPromptArch(trainer=trainer, **arch), vitb16_clip, CLASSES)
    assert count_parameters(model)[0] == count


def test_arch_round_trip_and_config_block():
    from mmrl.config import get_default_config
    cfg = get_default_config()
    for trainer, key in dp.CONFIG_KEY.items():
        cfg.TRAINER[key] = dp.config_block(trainer)
    cfg.TRAINER.NAME = "MaPLe"
    cfg.TRAINER.MAPLE.N_CTX, cfg.TRAINER.MAPLE.PROMPT_DEPTH = 3, 4
    arch = DeepPromptArch.from_cfg(cfg)
    assert (arch.n_ctx_text, arch.n_ctx_vision, arch.depth_text, arch.depth_vision) == (3, 3, 4, 4)
    assert DeepPromptArch.from_dict(arch.to_dict()) == arch
    cfg.TRAINER.NAME = "PromptSRC"
    arch = DeepPromptArch.from_cfg(cfg)
    assert (arch.n_ctx_text, arch.depth_vision, arch.ctx_init) == (4, 9, "a photo of a")
    assert DeepPromptBehaviour.from_cfg(cfg) == DeepPromptBehaviour(25.0, 10.0)
    cfg.TRAINER.NAME = "IVLP"
    assert DeepPromptArch.from_cfg(cfg).n_ctx_vision == 2


def test_eval_features_follow_loaded_weights(tiny_clip):
    model = make(tiny_clip, "IVLP", depth_text=3, depth_vision=3).eval()
    imgs = images(2)
    before = model.forward_eval(imgs)["class"]
    other = make(tiny_clip, "IVLP", depth_text=3, depth_vision=3)
    perturb(other)
    model.load_state_dict(other.state_dict())
    other.eval()
    assert torch.equal(model.forward_eval(imgs)["class"], other.forward_eval(imgs)["class"])
    assert not torch.allclose(before, other.forward_eval(imgs)["class"])


# -- the shipped configs ----------------------------------------------------------------------

CONFIGS = {  # file: (LR, MAX_EPOCH, (N_CTX_TEXT, N_CTX_VISION, DEPTH_TEXT, DEPTH_VISION), GPA) - spec §5.4, §6.4, §7.6
    "IVLP/vit_b16_c2_ep5_batch4_2+2ctx": (0.0035, 5, (2, 2, 12, 12), None),
    "IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only": (0.0025, 5, (4, 0, 12, 0), None),
    "IVLP/vit_b16_c2_ep20_batch4_4+4ctx": (0.0025, 20, (4, 4, 9, 9), None),
    "MaPLe/vit_b16_c2_ep5_batch4_2ctx": (0.0035, 5, (2, 2, 9, 9), None),
    "MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets": (0.0026, 2, (2, 2, 3, 3), None),
    "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx": (0.0025, 20, (4, 4, 9, 9), (15.0, 1.0)),
    "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets": (0.0025, 20, (4, 4, 3, 3), (6.0, 10.0)),
    "PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot": (0.0025, 50, (4, 4, 9, 9), (30.0, 30.0)),
}


def _merged(path):
    """The defaults plus our config blocks with the YAML applied (ints accepted for floats)."""
    import yaml
    from mmrl.config import flatten, get_default_config
    cfg = get_default_config()
    for trainer, key in dp.CONFIG_KEY.items():
        cfg.TRAINER[key] = dp.config_block(trainer)
    known = flatten(cfg)

    def walk(node, data, prefix=""):
        for k, v in data.items():
            full = prefix + k
            if isinstance(v, dict):
                walk(node[k], v, full + ".")
                continue
            assert full in known, f"{path}: {full} is not a known key"
            old = node[k]
            if isinstance(v, str) and not isinstance(old, str):
                v = ast.literal_eval(v)  # "(224, 224)", "1e-5": read as yacs reads them
            if isinstance(old, float) and isinstance(v, int):
                v = float(v)
            elif isinstance(old, (tuple, list)) and isinstance(v, (tuple, list)):
                v = type(old)(v)
            assert type(v) is type(old), f"{path}: {full} is {v!r}, default {old!r}"
            node[k] = v
    walk(cfg, yaml.safe_load(path.read_text()))
    return cfg


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shipped_configs_are_the_authors(name):
    from mmrl.config import configs_dir
    path = configs_dir() / "trainers" / f"{name}.yaml"
    assert path.read_text().startswith("# Protocol: ")
    lr, epochs, shape, gpa = CONFIGS[name]
    cfg = _merged(path)
    cfg.TRAINER.NAME = name.split("/")[0]
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == ("sgd", lr, epochs)
    assert (cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE, cfg.OPTIM.WARMUP_CONS_LR) == (1, "constant", 1e-5)
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE, cfg.TRAIN.PRINT_FREQ) == (4, 100, 20)
    assert cfg.INPUT.RRCROP_SCALE == (0.08, 1.0) and cfg.MODEL.BACKBONE.NAME == "ViT-B/16"
    blk = cfg.TRAINER[dp.CONFIG_KEY[cfg.TRAINER.NAME]]
    assert (blk.PREC, blk.CTX_INIT) == ("fp16", "a photo of a")
    arch = DeepPromptArch.from_cfg(cfg)
    assert (arch.n_ctx_text, arch.n_ctx_vision, arch.depth_text, arch.depth_vision) == shape
    if gpa is not None:
        assert (blk.GPA_MEAN, blk.GPA_STD, blk.TEXT_LOSS_WEIGHT, blk.IMAGE_LOSS_WEIGHT) == (*gpa, 25.0, 10.0)


def test_promptsrc_few_shot_gpa_overrides():
    """(45, 5) for the five datasets the authors name, under TASK FS only (spec §7.6)."""
    import yaml
    from mmrl.config import configs_dir
    table = yaml.safe_load((configs_dir() / "overrides" / "PromptSRC.yaml").read_text())
    assert not table["B2N"] and not table["CD"]
    assert sorted(table["FS"]) == sorted(["StanfordCars", "OxfordFlowers", "FGVCAircraft", "DescribableTextures",
                                          "EuroSAT"])
    for entry in table["FS"].values():
        assert entry == {"TRAINER.PROMPTSRC.GPA_MEAN": 45, "TRAINER.PROMPTSRC.GPA_STD": 5}


@pytest.mark.parametrize("trainer", ["IVLP", "MaPLe", "PromptSRC"])
def test_train_step_under_bf16_autocast(tiny_clip, trainer):
    """Other precisions than the reference's fp16 run: a bf16 autocast step gives finite gradients."""
    model = make(tiny_clip, trainer, n_ctx_text=2, n_ctx_vision=2, depth_text=3, depth_vision=3)
    imgs, y = images(2), torch.tensor([0, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits, _ = model.forward_train(imgs, y)
    loss.backward()
    assert torch.isfinite(loss) and logits.shape == (2, len(CLASSES))
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in model.parameters())
    ref_loss, _ = ReferenceDeepPrompts(model).forward_train(imgs, y)
    assert abs(loss.item() - ref_loss.item()) < 0.1 * max(1.0, ref_loss.item())  # bf16 rounding only
