"""The reference's checkpoints and initial tensors for IVLP, MaPLe and PromptSRC."""
import pytest
import torch

from mmrl.errors import CheckpointError
from mmrl.models.deep_prompts import DeepPromptArch, build_deep_prompt_model
from mmrl.models.deep_prompts_init import reference_initial_state
from mmrl.models.deep_prompts_official import clip_with_frozen, from_official
from mmrl.models.prompts import tokenize

CLASSES = ["cat", "dog", "sea_lion"]
ARCHS = {
    "IVLP": DeepPromptArch("IVLP", "tiny-test", 2, 3, 5, 4),
    "MaPLe": DeepPromptArch("MaPLe", "tiny-test", 2, 2, 4, 4),
    "PromptSRC": DeepPromptArch("PromptSRC", "tiny-test", 4, 4, 3, 3),
}
FP16_LEAVES = ("conv1.weight", "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias",
               "c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias", "proj", "text_projection")


def model_of(clip, trainer):
    torch.manual_seed(0)
    model = build_deep_prompt_model(ARCHS[trainer], clip, CLASSES)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _dassl_dtype(key, v):
    """The reference's fp16 CLIP: Linear/Conv/attention weights and the projections in fp16."""
    return v.half() if key.endswith(FP16_LEAVES) else v


def official_state_dict(model):
    """A reference CustomCLIP state dict with the key names and dtypes spec §1.6 / §5-§7 document."""
    clip, spec = model.clip, model.spec
    sd = {}
    for k, v in clip.state_dict().items():
        if k == "token_embedding.weight":
            continue  # the CustomCLIP holds no token embedding
        if k.startswith("visual."):
            sd["image_encoder." + k.removeprefix("visual.")] = _dassl_dtype(k, v)
        elif k == "logit_scale":
            sd[k] = v
        else:
            sd["text_encoder." + k] = _dassl_dtype(k, v)
    emb = clip.token_embedding(tokenize([f"{spec.prompt_prefix} {c}." for c in CLASSES])).half()
    sd["prompt_learner.token_prefix"] = emb[:, :1]
    sd["prompt_learner.token_suffix"] = emb[:, 1 + spec.n_ctx_text:]
    ours = model.state_dict()
    if spec.trainer == "MaPLe":
        for k, v in ours.items():
            sd["prompt_learner." + k] = v.half() if k.startswith(("ctx", "proj.")) else v
        return sd
    sd["prompt_learner.ctx"] = ours["ctx"].half()
    for i in range(spec.depth_text - 1):
        sd[f"text_encoder.transformer.resblocks.{i + 1}.VPT_shallow"] = ours[f"text_prompts.{i}"]
    sd["image_encoder.VPT"] = ours["vision_ctx"]
    for i in range(spec.depth_vision - 1):
        sd[f"image_encoder.transformer.resblocks.{i + 1}.VPT_shallow"] = ours[f"vision_prompts.{i}"]
    if spec.trainer == "PromptSRC":
        for k, v in clip.visual.state_dict().items():
            sd["prompt_learner.ZS_image_encoder." + k] = _dassl_dtype(k, v)
    return sd


@pytest.mark.parametrize("trainer", ["IVLP", "MaPLe", "PromptSRC"])
def test_official_checkpoint_maps_to_our_model(tiny_clip, trainer):
    model = model_of(tiny_clip, trainer)
    sd = official_state_dict(model)
    fallback = DeepPromptArch(trainer, "tiny-test", 9, 9, 9, 9, "a photo of a")
    ck = from_official(trainer, sd, fallback, clip=tiny_clip, source="fake.pth")
    assert ck.arch == model.spec
    ours = model.state_dict()
    assert set(ck.state_dict) == set(ours)
    for k, v in ck.state_dict.items():
        want = ours[k].half().float() if k.startswith(("ctx", "proj.")) else ours[k]
        assert v.dtype == torch.float32 and torch.equal(v, want), k
    assert ck.frozen_required == (trainer == "PromptSRC")
    assert "prompt_learner.token_prefix" in ck.ignored
    assert ("prompt_learner.ZS_image_encoder.*" in ck.ignored) == (trainer == "PromptSRC")
    clip_sd = tiny_clip.state_dict()
    assert set(ck.frozen) == set(clip_sd) - {"token_embedding.weight"}
    for k, v in ck.frozen.items():
        assert torch.equal(v, _dassl_dtype(k, clip_sd[k]).float()), k
    # a model built from the mapping scores like one holding the same tensors
    loaded = build_deep_prompt_model(ck.arch, tiny_clip, CLASSES)
    loaded.load_state_dict(ck.state_dict)
    assert torch.equal(loaded.state_dict()["text_prompts.0" if trainer != "MaPLe" else "compound_prompts_text.0"],
                       ours["text_prompts.0" if trainer != "MaPLe" else "compound_prompts_text.0"])


def test_frozen_weights_of_the_file_are_used(tiny_clip):
    """PromptSRC's aggregate perturbed the frozen CLIP: a CLIP holding the file's tensors scores differently."""
    model = model_of(tiny_clip, "PromptSRC")
    sd = official_state_dict(model)
    sd["image_encoder.transformer.resblocks.0.mlp.c_fc.weight"] = sd[
        "image_encoder.transformer.resblocks.0.mlp.c_fc.weight"] * 1.01
    sd["logit_scale"] = sd["logit_scale"] + 0.1
    ck = from_official("PromptSRC", sd, model.spec, clip=tiny_clip)
    clip = clip_with_frozen(tiny_clip, ck.frozen)
    assert clip is not tiny_clip and all(not p.requires_grad for p in clip.parameters())
    assert torch.equal(clip.token_embedding.weight, tiny_clip.token_embedding.weight)
    assert torch.equal(clip.logit_scale, tiny_clip.logit_scale + 0.1)
    from_file = build_deep_prompt_model(ck.arch, clip, CLASSES)
    from_file.load_state_dict(ck.state_dict)
    pristine = build_deep_prompt_model(ck.arch, tiny_clip, CLASSES)
    pristine.load_state_dict(ck.state_dict)
    imgs = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    a, b = from_file.eval().forward_eval(imgs)["class"], pristine.eval().forward_eval(imgs)["class"]
    assert (a - b).abs().max() > 1e-3


def test_official_checkpoint_refusals(tiny_clip):
    model = model_of(tiny_clip, "IVLP")
    sd = official_state_dict(model)
    with pytest.raises(CheckpointError, match="holds a IVLP model but --trainer is MaPLe"):
        from_official("MaPLe", sd, model.spec)
    with pytest.raises(CheckpointError, match="not an IVLP, MaPLe or PromptSRC"):
        from_official("IVLP", {k: v for k, v in sd.items() if k != "prompt_learner.ctx"}, model.spec)
    gap = dict(sd)
    del gap["text_encoder.transformer.resblocks.2.VPT_shallow"]
    with pytest.raises(CheckpointError, match="consecutive blocks"):
        from_official("IVLP", gap, model.spec)
    bad = dict(sd, **{"image_encoder.transformer.resblocks.1.VPT_shallow": torch.zeros(5, 64)})
    with pytest.raises(CheckpointError, match="has shape"):
        from_official("IVLP", bad, model.spec)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        from_official("IVLP", dict(sd, **{"prompt_learner.meta_net.weight": torch.zeros(1)}), model.spec)
    wide = dict(sd, **{"prompt_learner.ctx": torch.zeros(2, 512)})
    wide.update({k: torch.zeros(2, 512) for k in sd if k.startswith("text_encoder") and k.endswith("VPT_shallow")})
    with pytest.raises(CheckpointError, match="text width is 512"):
        from_official("IVLP", wide, model.spec, clip=tiny_clip)
    ck = from_official("IVLP", sd, model.spec)
    del ck.frozen["visual.ln_post.weight"]
    with pytest.raises(CheckpointError, match="does not fit the backbone"):
        clip_with_frozen(tiny_clip, ck.frozen)
    maple = official_state_dict(model_of(tiny_clip, "MaPLe"))
    del maple["prompt_learner.compound_prompt_projections.1.bias"]
    with pytest.raises(CheckpointError, match="without prompt_learner.compound_prompt_projections.1.bias"):
        from_official("MaPLe", maple, ARCHS["MaPLe"])


# -- initial tensors ----------------------------------------------------------------------------

@pytest.mark.parametrize("trainer", ["IVLP", "MaPLe", "PromptSRC"])
def test_reference_initial_state_loads_and_is_repeatable(tiny_clip, trainer):
    model = build_deep_prompt_model(ARCHS[trainer], tiny_clip, CLASSES)
    torch.manual_seed(7)
    first = reference_initial_state(model)
    after_first = torch.get_rng_state()
    torch.manual_seed(7)
    second = reference_initial_state(model)
    assert torch.equal(torch.get_rng_state(), after_first)
    model.load_state_dict(first)  # strict: every trainable, our names and shapes
    assert all(torch.equal(first[k], second[k]) for k in first)
    ids = tokenize(["a photo of a"])[0]
    phrase = tiny_clip.token_embedding.weight[ids[1:1 + model.spec.n_ctx_text]]
    assert torch.equal(first["ctx"], phrase.half().float())  # an fp16 run's ctx
    assert torch.equal(reference_initial_state(model, prec="fp32")["ctx"], phrase)
    for k, v in first.items():
        if "prompts" in k or k == "vision_ctx":
            assert 0.005 < v.std().item() < 0.04, k


def test_reference_initial_state_orders(tiny_clip):
    """PromptSRC draws IVLP's tensors, then two more CLIP builds; MaPLe's deep projections start equal."""
    ivlp = build_deep_prompt_model(DeepPromptArch("IVLP", "tiny-test", 4, 4, 3, 3), tiny_clip, CLASSES)
    src = build_deep_prompt_model(DeepPromptArch("PromptSRC", "tiny-test", 4, 4, 3, 3), tiny_clip, CLASSES)
    torch.manual_seed(3)
    a = reference_initial_state(ivlp)
    after_ivlp = torch.rand(1)
    torch.manual_seed(3)
    b = reference_initial_state(src)
    assert all(torch.equal(a[k], b[k]) for k in a) and set(a) == set(b)
    assert not torch.equal(torch.rand(1), after_ivlp)
    maple = build_deep_prompt_model(ARCHS["MaPLe"], tiny_clip, CLASSES)
    torch.manual_seed(3)
    m = reference_initial_state(maple)
    assert torch.equal(m["compound_prompt_projections.0.weight"], m["compound_prompt_projections.2.weight"])
    assert torch.equal(m["proj.weight"], m["proj.weight"].half().float())
    assert not torch.equal(m["compound_prompts_text.0"], m["compound_prompts_text.1"])
    assert m["proj.weight"].abs().max() <= 1 / 64 ** 0.5  # kaiming-uniform(a=sqrt 5) bound 1/sqrt(fan_in)


@pytest.mark.parametrize("trainer", ["IVLP", "MaPLe"])
def test_official_checkpoint_of_another_backbone_with_the_same_widths_is_refused(tiny_clip, trainer):
    """ViT-B/32 and ViT-B/16 share their widths, so the learned tensors fit either; the file's frozen
    image encoder (smaller patches: more positions) tells the backbone it was trained with."""
    model = model_of(tiny_clip, trainer)
    sd = official_state_dict(model)
    pos = sd["image_encoder.positional_embedding"]
    sd["image_encoder.positional_embedding"] = torch.zeros(pos.shape[0] * 4 - 3, pos.shape[1])
    with pytest.raises(CheckpointError, match=r"fake.pth: its frozen visual.positional_embedding has shape"):
        from_official(trainer, sd, model.spec, clip=tiny_clip, source="fake.pth")


@pytest.mark.parametrize("trainer", ["IVLP", "MaPLe", "PromptSRC"])
def test_official_checkpoint_of_other_weights_of_the_same_backbone_is_refused_where_ours_score_it(tiny_clip, trainer):
    """The official evaluation scores the file's frozen CLIP; IVLP and MaPLe are scored here on the
    backbone's, so another pretraining's weights (same shapes) are refused. fp16 copies are the same
    weights; PromptSRC is scored on the file's tensors, so its file may differ."""
    model = model_of(tiny_clip, trainer)
    sd = official_state_dict(model)  # Linear weights stored in fp16, as the official code saves them
    assert from_official(trainer, sd, model.spec, clip=tiny_clip, source="fake.pth") is not None
    key = "image_encoder.transformer.resblocks.3.attn.in_proj_weight"
    sd[key] = (sd[key].float() + 0.05 * torch.randn_like(sd[key].float())).to(sd[key].dtype)
    if trainer == "PromptSRC":
        assert from_official(trainer, sd, model.spec, clip=tiny_clip, source="fake.pth").frozen_required
        return
    with pytest.raises(CheckpointError, match=r"fake.pth: its frozen visual.transformer.resblocks.3.attn.in_proj_weight "
                                              r"differs from backbone tiny-test's"):
        from_official(trainer, sd, model.spec, clip=tiny_clip, source="fake.pth")
