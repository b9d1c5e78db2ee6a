"""CoOp, CoCoOp and KgCoOp: the fast models equal the straightforward reference; init and loss as the spec says."""
import pytest
import torch
import torch.nn.functional as F

import mmrl.models.coop as coop
from mmrl.errors import ConfigError
from mmrl.models.coop import CoCoOp, CoOp, KgCoOp, PromptArch, build_prompt_model, kgcoop_template
from mmrl.models.coop_reference import ReferencePrompted
from mmrl.models.prompts import tokenize
from mmrl.trainers import registry
from step_compare import assert_train_step_matches

# names of several BPE lengths (one with "_"), so that prompts fall into several length groups
CLASSES = ["Annual_Crop_Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Sea or Lake",
           "a much longer class name with many words", "x"]


def make(clip, trainer="CoOp", classes=CLASSES, w=8.0, **arch):
    torch.manual_seed(1)
    spec = PromptArch(trainer=trainer, backbone="tiny-test", **arch)
    return build_prompt_model(spec, clip, classes, template="a photo of a {}, a type of texture.", w=w)


def perturb(model, scale=0.05):
    """Move every learned tensor off its init (a phrase's embedding is special in no way then);
    the tiny meta-net has 2 hidden units: keep them alive so that every tensor gets a gradient."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
        if isinstance(model, CoCoOp):
            model.prompt_learner.meta_net.linear1.bias.fill_(0.5)


def images(n, seed=5):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def compare_with_reference(model, x, labels, tol=1e-4):
    ref = ReferencePrompted(model)
    assert_train_step_matches(model, ref, x, labels, tol)
    model.eval()
    out = model.forward_eval(x)
    assert out["class"] is out["fused"]
    assert (out["class"] - ref.logits(x)[0]).abs().max().item() < tol


slow = pytest.mark.slow


@pytest.fixture(params=[pytest.param(1000, marks=slow), 2], ids=["one-group", "groups-of-2"])
def group_size(request, monkeypatch):
    monkeypatch.setattr(coop, "TEXT_GROUP_SIZE", request.param)
    return request.param


@pytest.mark.parametrize("arch", [
    dict(n_ctx=4, ctx_init="a photo of a"),
    pytest.param(dict(n_ctx=16), marks=slow),
    dict(n_ctx=5, csc=True),
    dict(n_ctx=5, class_token_position="middle"),
    pytest.param(dict(n_ctx=4, csc=True, class_token_position="middle"), marks=slow),
    dict(n_ctx=3, class_token_position="front"),
    pytest.param(dict(n_ctx=3, csc=True, class_token_position="front"), marks=slow),
], ids=["ctxv1", "m16", "csc", "middle-odd", "csc-middle", "front", "csc-front"])
def test_coop_fast_equals_reference(tiny_clip, arch, group_size):
    model = make(tiny_clip, "CoOp", **arch)
    perturb(model)
    compare_with_reference(model, images(3), torch.tensor([0, 5, 6]))


@pytest.mark.parametrize("arch", [dict(n_ctx=4, ctx_init="a photo of a"),
                                  pytest.param(dict(n_ctx=6, csc=True), marks=slow)], ids=["ctxv1", "csc"])
def test_kgcoop_fast_equals_reference(tiny_clip, arch, group_size):
    model = make(tiny_clip, "KgCoOp", **arch)
    perturb(model)
    compare_with_reference(model, images(3), torch.tensor([1, 2, 6]))


@pytest.mark.parametrize("arch", [dict(n_ctx=4, ctx_init="a photo of a"), pytest.param(dict(n_ctx=8), marks=slow)],
                         ids=["ctxv1", "c8"])
def test_cocoop_fast_equals_reference(tiny_clip, arch, group_size, monkeypatch):
    monkeypatch.setattr(coop, "COCOOP_SEQUENCES", 5)  # several image chunks per class group
    model = make(tiny_clip, "CoCoOp", **arch)
    perturb(model)
    compare_with_reference(model, images(3), torch.tensor([0, 3, 6]))


def test_cocoop_logits_do_not_depend_on_the_batch(tiny_clip):
    """Each image's row is its own conditioned pass: the batched pass equals images one at a time."""
    model = make(tiny_clip, "CoCoOp", n_ctx=4, ctx_init="a photo of a")
    perturb(model)
    model.eval()
    x = images(4)
    batched = model.forward_eval(x)["class"]
    single = torch.cat([model.forward_eval(x[i:i + 1])["class"] for i in range(4)])
    assert (batched - single).abs().max() < 1e-4
    assert (batched[0] - batched[1]).abs().max() > 1e-3  # the meta-net makes rows image-specific


@pytest.mark.parametrize("trainer,arch", [("CoOp", dict(n_ctx=5, csc=True, class_token_position="middle")),
                                          ("CoCoOp", dict(n_ctx=4, ctx_init="a photo of a"))])
def test_last_layer_query_cut_equals_whole_blocks(tiny_clip, trainer, arch):
    model = make(tiny_clip, trainer, **arch)
    perturb(model)
    model.eval()
    x = images(2)
    cut = model.forward_eval(x)["class"], model.image_prefix(x)
    model._blockwise = False
    model.train(); model.eval()
    whole = model.forward_eval(x)["class"], model.image_prefix(x)
    for a, b in zip(cut, whole):
        assert (a - b).abs().max() < 1e-4


def test_eval_text_features_follow_the_parameters(tiny_clip):
    """Eval-mode text features are cached, and dropped when parameters are loaded or trained."""
    model, other = make(tiny_clip, "CoOp", n_ctx=4), make(tiny_clip, "CoOp", n_ctx=4)
    perturb(other)
    model.eval(), other.eval()
    x = images(2)
    before = model.forward_eval(x)["class"]
    model.load_state_dict(other.state_dict())
    after = model.forward_eval(x)["class"]
    assert (before - after).abs().max() > 1e-3
    assert torch.equal(after, other.forward_eval(x)["class"])


@pytest.mark.parametrize("trainer", ["CoOp", "KgCoOp", "CoCoOp"])
def test_bf16_autocast_runs_and_stays_close(tiny_clip, trainer):
    model = make(tiny_clip, trainer, n_ctx=4, ctx_init="a photo of a")
    perturb(model)
    x, y = images(2), torch.tensor([0, 6])
    loss, logits, _ = model.forward_train(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_bf, logits_bf, _ = model.forward_train(x, y)
    loss_bf.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert (logits_bf.float() - logits).abs().max() < 0.5  # logits are ~14 x cosine on the tiny CLIP
    assert abs(loss_bf.item() - loss.item()) < 0.2


def test_logits_use_clips_temperature(tiny_clip):
    """exp(logit_scale), not 100: the tiny CLIP's stored temperature is ln(1/0.07)."""
    model = make(tiny_clip, "CoOp", n_ctx=4)
    assert type(model) is CoOp
    model.eval()
    x = images(2)
    f = F.normalize(tiny_clip.encode_image(x), dim=-1)
    w = model.eval_text_features()
    scale = tiny_clip.logit_scale.exp()
    assert abs(scale.item() - 100.0) > 1.0
    assert torch.allclose(model.forward_eval(x)["class"], scale * f @ w.t(), atol=1e-4)


def test_kgcoop_loss_formula(tiny_clip):
    model = make(tiny_clip, "KgCoOp", n_ctx=4, ctx_init="a photo of a", w=8.0)
    g = torch.Generator().manual_seed(0)
    w = F.normalize(torch.randn(7, 32, generator=g), dim=-1)
    u = F.normalize(torch.randn(7, 32, generator=g), dim=-1)
    logits = torch.randn(3, 7, generator=g)
    y = torch.tensor([0, 4, 6])
    loss, extras = model.loss_from_features(logits, w, u, y)
    want = F.cross_entropy(logits, y) + 8.0 * (1 - (w * u).sum(1).mean())  # mean over all classes
    assert torch.allclose(loss, want, atol=1e-5)
    assert torch.allclose(extras["score"], 1 - (w * u).sum(1).mean(), atol=1e-6)


def test_kgcoop_hand_crafted_features_are_frozen_clips(tiny_clip):
    model = make(tiny_clip, "KgCoOp", n_ctx=4, ctx_init="a photo of a")
    texts = [f"a photo of a {n.replace('_', ' ')}, a type of texture." for n in CLASSES]
    want = F.normalize(tiny_clip.encode_text(tokenize(texts)), dim=-1)
    assert torch.allclose(model.hand_crafted_features(), want, atol=1e-5)
    assert kgcoop_template("DescribableTextures", "{} texture.") == "a photo of a {}, a type of texture."
    assert kgcoop_template("EuroSAT", "a centered satellite photo of {}.") == "a centered satellite photo of {}."


def test_init_phrase_gives_the_phrase_embeddings(tiny_clip):
    model = make(tiny_clip, "CoOp", n_ctx=4, ctx_init="a photo of a")
    ids = tokenize(["a photo of a"])[0]
    ctx = model.prompt_learner.ctx
    assert ctx.shape == (4, 64) and ctx.requires_grad
    assert torch.equal(ctx, tiny_clip.token_embedding.weight[ids[1:5]])
    # the placeholder prompt is the phrase itself, so the input equals the hand-written prompt's embedding
    ref = ReferencePrompted(model)
    want = tiny_clip.token_embedding(tokenize([f"a photo of a {n.replace('_', ' ')}." for n in CLASSES]))
    assert torch.equal(ref.prompts(ctx), want)


def test_random_init_shapes_and_scale(tiny_clip):
    generic = make(tiny_clip, "CoOp", n_ctx=16).prompt_learner.ctx
    csc = make(tiny_clip, "CoOp", n_ctx=16, csc=True).prompt_learner.ctx
    assert generic.shape == (16, 64) and csc.shape == (len(CLASSES), 16, 64)
    for t in (generic, csc):
        assert abs(t.std().item() - 0.02) < 0.004 and abs(t.mean().item()) < 0.004
    pl = make(tiny_clip, "CoCoOp", n_ctx=4).prompt_learner
    assert pl.meta_net.linear1.weight.shape == (2, 32) and pl.meta_net.linear2.weight.shape == (64, 2)
    assert sorted(n for n, _ in make(tiny_clip, "CoCoOp", n_ctx=4).named_parameters()) == [
        "prompt_learner.ctx", "prompt_learner.meta_net.linear1.bias", "prompt_learner.meta_net.linear1.weight",
        "prompt_learner.meta_net.linear2.bias", "prompt_learner.meta_net.linear2.weight"]


def test_only_learned_tensors_in_state_and_gradients(tiny_clip):
    model = make(tiny_clip, "KgCoOp", n_ctx=4, ctx_init="a photo of a")
    loss, _, _ = model.forward_train(images(2), torch.tensor([0, 1]))
    loss.backward()
    assert all(p.grad is None for p in tiny_clip.parameters())
    assert list(model.state_dict()) == ["prompt_learner.ctx"]


def test_middle_and_front_layouts_place_the_name(tiny_clip):
    """The rows of the official layouts (spec §2.2), read off the index."""
    for position, want in (("end", ["S", "c0", "c1", "c2", "n0", "n1", "."]),
                           ("middle", ["S", "c0", "n0", "n1", "c1", "c2", "."]),
                           ("front", ["S", "n0", "n1", "c0", "c1", "c2", "."])):
        sk = make(tiny_clip, "CoOp", classes=["Sea_Lake"], n_ctx=3, class_token_position=position).skeleton
        label = {0: "S", 4: "n0", 5: "n1", 6: ".", 77: "c0", 78: "c1", 79: "c2"}
        assert [label[i] for i in sk.index[0, :7].tolist()] == want
        assert int(sk.prompts.eot[0]) == 7


def test_arch_from_config_follows_the_official_rules():
    from types import SimpleNamespace as NS

    def cfg(name, **blk):
        base = dict(N_CTX=16, CSC=False, CTX_INIT="", CLASS_TOKEN_POSITION="end")
        base.update(blk)
        return NS(TRAINER=NS(NAME=name, COOP=NS(**base), COCOOP=NS(**base)), MODEL=NS(BACKBONE=NS(NAME="ViT-B/16")))
    a = PromptArch.from_cfg(cfg("CoOp", CTX_INIT="a_photo of a", CSC=True))
    assert (a.n_ctx, a.ctx_init, a.csc) == (4, "a photo of a", False)  # a phrase: its words, CSC ignored
    a = PromptArch.from_cfg(cfg("KgCoOp", CTX_INIT=True, N_CTX=4, CLASS_TOKEN_POSITION="front"))
    assert (a.n_ctx, a.ctx_init, a.class_token_position) == (4, "a photo of a", "end")
    a = PromptArch.from_cfg(cfg("KgCoOp", CTX_INIT="anything", N_CTX=4))
    assert a.ctx_init == "a photo of a"
    assert PromptArch.from_cfg(cfg("CoCoOp", N_CTX=8, CSC=True)).csc is False
    assert PromptArch.from_dict(a.to_dict()) == a
    with pytest.raises(ConfigError, match="CLASS_TOKEN_POSITION"):
        PromptArch(class_token_position="left")
    with pytest.raises(ConfigError, match="CTX_INIT"):
        PromptArch.from_cfg(cfg("CoOp", CTX_INIT=True))


def test_too_long_prompt_is_refused(tiny_clip):
    with pytest.raises(ConfigError, match="longer than"):
        make(tiny_clip, "CoOp", classes=["word " * 80], n_ctx=4)


# -- the official trainers' initial tensors and checkpoints --------------------------------------

@slow
def test_official_clip_construction_draws_rng_md_word_count():
    """One OpenAI ViT-B/16 construction consumes rng.md §3's MMRL build less its projection's randn."""
    from mmrl.models.deep_prompts_init import clip_build_draws
    from mmrl.models.init_order import ClipDims, _Discard
    dims = ClipDims(vision_width=768, vision_layers=12, patch_size=16, grid=14, text_width=512, text_layers=12,
                    vocab_size=49408, context_length=77, embed_dim=512)
    torch.manual_seed(0)
    clip_build_draws(dims, _Discard())
    drawn = torch.get_rng_state()
    torch.manual_seed(0)
    words, chunk = 212_947_968 - 768 * 512, torch.empty(1 << 24)
    for start in range(0, words, chunk.numel()):
        chunk[:min(chunk.numel(), words - start)].uniform_()  # uniform_ takes one word per element
    assert torch.equal(drawn, torch.get_rng_state())



@pytest.mark.parametrize("prec", ["fp16", "fp32"])
def test_official_initial_state_dtypes_and_names(tiny_clip, prec):
    from mmrl.models.coop_official import official_initial_state
    phrase = official_initial_state(PromptArch(n_ctx=4, ctx_init="a photo of a"), tiny_clip, 7, prec)
    emb = tiny_clip.token_embedding.weight[tokenize(["a photo of a"])[0, 1:5]]
    want = emb.half().float() if prec == "fp16" else emb
    assert torch.equal(phrase["prompt_learner.ctx"], want)  # the embedding in the official dtype, no draw
    csc = official_initial_state(PromptArch(n_ctx=5, csc=True), tiny_clip, 7, prec)["prompt_learner.ctx"]
    assert csc.shape == (7, 5, 64) and abs(csc.std().item() - 0.02) < 0.005
    assert torch.equal(csc, csc.half().float()) == (prec == "fp16")
    state = official_initial_state(PromptArch("CoCoOp", n_ctx=4), tiny_clip, 7, prec)
    model = make(tiny_clip, "CoCoOp", n_ctx=4)
    model.load_state_dict(state)  # strict: exactly the model's tensors
    assert all(torch.equal(t, t.half().float()) == (prec == "fp16") for t in state.values())
    kg = official_initial_state(PromptArch("KgCoOp", n_ctx=4, ctx_init="a photo of a"), tiny_clip, 7, prec)
    assert list(kg) == ["prompt_learner.ctx"]


def test_kgcoop_draws_a_second_clip_and_its_unused_modules(tiny_clip):
    """Same seed, same kept ctx: KgCoOp's stream is CoOp's plus a bias vector, a CLIP and three Linears."""
    from mmrl.models.coop_official import official_initial_state
    from mmrl.models.deep_prompts_init import clip_build_draws
    from mmrl.models.init_order import ClipDims, _Discard
    torch.manual_seed(4)
    kg = official_initial_state(PromptArch("KgCoOp", n_ctx=6), tiny_clip, 7, "fp16")
    after_kg = torch.get_rng_state()
    torch.manual_seed(4)
    co = official_initial_state(PromptArch("CoOp", n_ctx=6), tiny_clip, 7, "fp16")
    torch.empty(1, 512, dtype=torch.float16).normal_()
    clip_build_draws(ClipDims.of(tiny_clip), _Discard())
    for n in (512 * 512 + 512, 128 * 512, 512 * 128):
        torch.empty(n).uniform_()
    assert torch.equal(kg["prompt_learner.ctx"], co["prompt_learner.ctx"])
    assert torch.equal(after_kg, torch.get_rng_state())


def tiny_start_embedding(width=64):
    """tiny-test's start-of-text embedding (the first row of every official token_prefix)."""
    from open_clip.tokenizer import _tokenizer
    from mmrl.clip.archs import build_tiny_clip
    return build_tiny_clip("tiny-test").token_embedding.weight[_tokenizer.sot_token_id] if width == 64 else torch.zeros(width)


def fake_official(trainer, n_ctx=4, csc_classes=0, trained_classes=3, width=64, embed=32, seed=0):
    """A prompt_learner state dict with the official key names, shapes and fp16 dtype (spec §1.6),
    trained on tiny-test (its token_prefix rows are tiny-test's start-of-text embedding)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: (0.05 * torch.randn(*s, generator=g)).half()
    sd = {"ctx": r(csc_classes, n_ctx, width) if csc_classes else r(n_ctx, width),
          "token_prefix": tiny_start_embedding(width).expand(trained_classes, 1, width).half(),
          "token_suffix": r(trained_classes, 76 - n_ctx, width)}
    if trainer == "CoCoOp":
        sd.update({"meta_net.linear1.weight": r(embed // 16, embed), "meta_net.linear1.bias": r(embed // 16) + 0.5,
                   "meta_net.linear2.weight": r(width, embed // 16), "meta_net.linear2.bias": r(width)})
    if trainer == "KgCoOp":
        sd.update({"bias_vectors": r(1, 512), "meta_net.linear1.weight": r(512, 512), "meta_net.linear1.bias": r(512)})
    return sd


@pytest.mark.parametrize("trainer,kw,current", [
    ("CoOp", dict(n_ctx=4), dict(n_ctx=4, ctx_init="a photo of a")),
    ("CoOp", dict(n_ctx=16), dict(n_ctx=4, ctx_init="a photo of a")),        # config phrase, random-init file
    ("CoOp", dict(n_ctx=5, csc_classes=len(CLASSES)), dict(n_ctx=16, class_token_position="middle")),
    ("KgCoOp", dict(n_ctx=4), dict(n_ctx=4, ctx_init="a photo of a")),
    ("CoCoOp", dict(n_ctx=4), dict(n_ctx=4, ctx_init="a photo of a")),
    ("CoCoOp", dict(n_ctx=8), dict(n_ctx=16)),
], ids=["coop-ctxv1", "coop-m16", "coop-csc-middle", "kgcoop", "cocoop-ctxv1", "cocoop-c8"])
def test_official_checkpoint_logits_equal_reference(tiny_clip, trainer, kw, current):
    from mmrl.models.coop_official import from_official
    sd = fake_official(trainer, **kw)
    arch, state = from_official(sd, PromptArch(trainer=trainer, backbone="tiny-test", **current), tiny_clip,
                                len(CLASSES))
    n_ctx = kw["n_ctx"]
    assert (arch.n_ctx, arch.csc) == (n_ctx, bool(kw.get("csc_classes")))
    assert arch.ctx_init == (current.get("ctx_init", "") if n_ctx == current["n_ctx"] else "")
    model = build_prompt_model(arch, tiny_clip, CLASSES, template="a photo of a {}.", w=8.0)
    model.load_state_dict(state)  # strict: only learned tensors, no prefix/suffix or unused KgCoOp tensors
    model.eval()
    # the reference, given the official tensors by their official names
    ref_model = build_prompt_model(arch, tiny_clip, CLASSES, template="a photo of a {}.")
    with torch.no_grad():
        for name, p in ref_model.prompt_learner.named_parameters():
            p.copy_(sd[name].float())
    x = images(2)
    want = ReferencePrompted(ref_model).logits(x)[0]
    assert (model.forward_eval(x)["class"] - want).abs().max().item() < 1e-4


@pytest.mark.parametrize("trainer,sd_of,current,match", [
    ("CoOp", "CoCoOp", dict(n_ctx=4), "looks like CoCoOp"),
    ("CoOp", "KgCoOp", dict(n_ctx=4), "looks like KgCoOp"),
    ("CoCoOp", "CoOp", dict(n_ctx=4), "missing"),
    ("KgCoOp", "CoCoOp", dict(n_ctx=4), "looks like CoCoOp"),
])
def test_official_checkpoint_of_another_method_is_refused(tiny_clip, trainer, sd_of, current, match):
    from mmrl.errors import CheckpointError
    from mmrl.models.coop_official import from_official
    with pytest.raises(CheckpointError, match=match):
        from_official(fake_official(sd_of), PromptArch(trainer=trainer, **current), tiny_clip, len(CLASSES))


def test_official_checkpoint_shape_mismatches_are_refused(tiny_clip):
    from mmrl.errors import CheckpointError
    from mmrl.models.coop_official import from_official
    with pytest.raises(CheckpointError, match="ctx has shape"):
        from_official(fake_official("CoOp", width=512), PromptArch(), tiny_clip, len(CLASSES))
    with pytest.raises(CheckpointError, match="class-specific context for 3 classes"):
        from_official(fake_official("CoOp", csc_classes=3), PromptArch(), tiny_clip, len(CLASSES))
    with pytest.raises(CheckpointError, match="meta_net.linear1.weight has shape"):
        from_official(fake_official("CoCoOp", embed=512), PromptArch("CoCoOp", n_ctx=4), tiny_clip, len(CLASSES))
    # the harness's own layout (prompt_learner. prefix) and a DataParallel one load alike
    sd = {"module.prompt_learner." + k: v for k, v in fake_official("KgCoOp").items()}
    arch, state = from_official(sd, PromptArch("KgCoOp", n_ctx=4, ctx_init="a photo of a"), tiny_clip, 7)
    assert list(state) == ["prompt_learner.ctx"] and state["prompt_learner.ctx"].dtype == torch.float32


# -- configs -------------------------------------------------------------------------------------

def official_config(trainer, cfg_name, opts=()):
    """A config with ``trainer``'s blocks added (as the trainer registry does), its YAML and opts merged."""
    from pathlib import Path

    from mmrl.config import ConfigBuilder, flatten, validate
    b = ConfigBuilder()
    b.cfg.TRAINER.NAME = trainer
    for key, node in coop.config_blocks(trainer).items():
        b.cfg.TRAINER[key] = node
    b.provenance.update({k: "default" for k in flatten(b.cfg)})
    b._known = set(b.provenance)
    b.merge_yaml(Path(coop.__file__).parents[1] / "configs" / "trainers" / trainer / f"{cfg_name}.yaml", "trainer")
    b.merge_opts(["TASK", "B2N", *opts])  # TASK: the harness's protocol key (the official configs have none)
    validate(b.cfg, trains=True, provenance=b.provenance)
    return b.cfg


@pytest.mark.parametrize("trainer,cfg_name,opts,want", [
    ("CoOp", "vit_b16_ctxv1", (), dict(n_ctx=4, ctx_init="a photo of a", epochs=200, batch=32)),
    ("CoOp", "vit_b16_ep50", ("TRAINER.COOP.CSC", "True", "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle"),
     dict(n_ctx=16, csc=True, position="middle", epochs=50, batch=32)),
    ("CoOp", "vit_b16_ep100", (), dict(n_ctx=16, epochs=100, batch=32)),
    ("CoOp", "vit_b16", (), dict(n_ctx=16, epochs=200, batch=32)),
    ("CoOp", "vit_b16_ep50_ctxv1", (), dict(n_ctx=4, ctx_init="a photo of a", epochs=50, batch=32)),
    ("CoOp", "vit_b16_ep100_ctxv1", (), dict(n_ctx=4, ctx_init="a photo of a", epochs=100, batch=32)),
    ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", (), dict(n_ctx=4, ctx_init="a photo of a", epochs=10, batch=1)),
    ("CoCoOp", "vit_b16_c4_ep10_batch1", (), dict(n_ctx=4, epochs=10, batch=1)),
    ("CoCoOp", "vit_b16_c8_ep10_batch1", (), dict(n_ctx=8, epochs=10, batch=1)),
    ("CoCoOp", "vit_b16_c16_ep10_batch1", (), dict(n_ctx=16, epochs=10, batch=1)),
    ("KgCoOp", "vit_b16_ep100_ctxv1", ("TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "8.0",
                                       "TRAINER.COOP.CLASS_TOKEN_POSITION", "end"),
     dict(n_ctx=4, ctx_init="a photo of a", epochs=100, batch=128)),
])
def test_official_configs_load_and_give_the_architecture(trainer, cfg_name, opts, want):
    cfg = official_config(trainer, cfg_name, opts)
    arch = PromptArch.from_cfg(cfg)
    assert (arch.n_ctx, arch.ctx_init, arch.csc, arch.class_token_position) == (
        want["n_ctx"], want.get("ctx_init", ""), want.get("csc", False), want.get("position", "end"))
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == ("sgd", 0.002, want["epochs"])
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == want["batch"] and cfg.DATALOADER.TEST.BATCH_SIZE == 100
    assert tuple(cfg.INPUT.RRCROP_SCALE) == (0.08, 1.0)  # Dassl's default: no baseline config sets it
    block = cfg.TRAINER.COCOOP if trainer == "CoCoOp" else cfg.TRAINER.COOP
    assert block.PREC == "fp16"
    if trainer == "KgCoOp":
        assert cfg.TRAINER.COOP.W == 8.0 and cfg.TRAINER.COOP.CTX_INIT is True


def test_model_from_config_takes_kgcoops_weight_and_template(tiny_clip):
    cfg = official_config("KgCoOp", "vit_b16_ep100_ctxv1", ("TRAINER.COOP.W", "8.0", "DATASET.NAME",
                                                             "DescribableTextures"))
    model = coop.model_from_cfg(cfg, PromptArch.from_cfg(cfg), tiny_clip, ["banded", "woven"], "{} texture.")
    assert isinstance(model, KgCoOp) and model.w == 8.0
    assert model.hand_crafted.texts == ["a photo of a banded, a type of texture.", "a photo of a woven, a type of texture."]
    assert registry.get("KgCoOp").precision(cfg) == "fp16"
    cfg = official_config("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", ("TRAINER.COCOOP.PREC", "fp32"))
    assert isinstance(coop.model_from_cfg(cfg, PromptArch.from_cfg(cfg), tiny_clip, CLASSES, ""), CoCoOp)
    assert registry.get("CoCoOp").precision(cfg) == "fp32"


@pytest.mark.parametrize("trainer", ["CoOp", "CoCoOp", "KgCoOp"])
def test_official_file_of_another_clip_of_the_same_width_is_refused(tiny_clip, trainer):
    """Its token_prefix rows are the start-of-text embedding of the CLIP it was trained on: another
    pretraining (same widths, so ctx alone would load) is refused."""
    from mmrl.errors import CheckpointError
    from mmrl.models.coop_official import from_official
    sd = fake_official(trainer)
    current = PromptArch(trainer=trainer, n_ctx=4)
    assert from_official(dict(sd), current, tiny_clip, len(CLASSES), source="fake.pth")[0].n_ctx == 4
    sd["token_prefix"] = (0.05 * torch.randn(3, 1, 64)).half()
    with pytest.raises(CheckpointError, match=r"fake.pth: its frozen token_embedding.weight\[<start_of_text>\] "
                                              r"differs from backbone"):
        from_official(sd, current, tiny_clip, len(CLASSES), source="fake.pth")
