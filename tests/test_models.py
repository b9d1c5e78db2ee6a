"""MMRL / MMRL++ compute exactly docs/method.md; the fast path equals the reference."""
import pytest
import torch
import torch.nn.functional as F

from mmrl.models.mmrl import (ArchSpec, Behaviour, MultiModalRepresentationLearner, count_parameters,
                              select_test_logits)
from mmrl.models.prompts import Prompts
from mmrl.models.reference import ReferenceMMRL
from step_compare import assert_train_step_matches

EUROSAT = ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Sea_or_Lake"]


def make(clip, trainer="MMRL", classes=EUROSAT, template="a centered satellite photo of {}.", beta=0.9, **spec):
    torch.manual_seed(1)
    prompts = Prompts.build(classes, template)
    return MultiModalRepresentationLearner(ArchSpec(trainer=trainer, **spec), clip, prompts,
                                           Behaviour(alpha=0.7, beta=beta, reg_weight=0.5))


def perturb(model, scale=0.05):
    """Move every trainable tensor off its init (zeros in B would hide bugs)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def compare_with_reference(model, images, labels, tol=1e-4):
    ref = ReferenceMMRL(model)
    assert_train_step_matches(model, ref, images, labels, tol, every_tensor_learns=False)
    model.eval()
    out_f = model.forward_eval(images)
    out_r, _ = ref.logits(images)
    for head in ("class", "rep", "fused"):
        assert (out_f[head] - out_r[head]).abs().max().item() < tol


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
@pytest.mark.parametrize("layers", [[6, 7, 8, 9, 10, 11, 12], [3, 6, 12], [1, 2]])
def test_fast_equals_reference_tiny(tiny_clip, trainer, layers):
    model = make(tiny_clip, trainer, rep_layers=layers, rep_dim=48, beta=0.6)
    perturb(model)
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    compare_with_reference(model, images, torch.tensor([0, 3, 4]))


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_fast_equals_reference_vitb16_size(vitb16_clip, trainer):
    model = make(vitb16_clip, trainer, beta=0.7)
    perturb(model, 0.02)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    compare_with_reference(model, images, torch.tensor([1, 4]))


def test_trainable_counts_at_defaults(vitb16_clip):
    assert count_parameters(make(vitb16_clip, "MMRL"))[0] == 4_992_256
    assert count_parameters(make(vitb16_clip, "MMRLpp"))[0] == 813_312
    assert count_parameters(make(vitb16_clip, "MMRL", rep_dim=2048))[0] == 18_762_496


def test_only_trainable_tensors_get_gradients(tiny_clip):
    model = make(tiny_clip)
    loss, _, _ = model.forward_train(torch.randn(2, 3, 224, 224), torch.tensor([0, 1]))
    loss.backward()
    assert all(p.grad is None for p in tiny_clip.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    names = {n for n, _ in model.named_parameters()}
    assert "representation_learner.compound_rep_tokens" in names and "image_encoder.proj_rep" in names
    assert not any(n.startswith("clip.") for n in model.state_dict())


def test_mmrl_init(tiny_clip):
    model = make(tiny_clip, rep_dim=40)
    rl = model.representation_learner
    for lin_list in (rl.compound_rep_tokens_r2vproj, rl.compound_rep_tokens_r2tproj):
        assert len(lin_list) == 7
        for lin in lin_list[1:]:
            assert torch.equal(lin.weight, lin_list[0].weight) and torch.equal(lin.bias, lin_list[0].bias)
            assert lin.weight.data_ptr() != lin_list[0].weight.data_ptr()  # copies, not shared
    assert rl.compound_rep_tokens.shape == (5, 40)
    assert 0.01 < rl.compound_rep_tokens.std().item() < 0.04
    width = tiny_clip.visual.proj.shape[0]
    proj_rep = model.image_encoder.proj_rep
    assert not torch.allclose(proj_rep, tiny_clip.visual.proj)
    assert abs(proj_rep.std().item() - width ** -0.5) < 0.3 * width ** -0.5


def test_mmrlpp_init(tiny_clip):
    model = make(tiny_clip, "MMRLpp")
    proj = tiny_clip.visual.proj
    assert torch.equal(model.image_encoder.matrix(proj), proj)
    srra = model.representation_learner.srra_r2vproj
    assert all(torch.equal(r.B, torch.zeros_like(r.B)) for r in srra.srra)
    assert all(torch.equal(r.bias, srra.srra[0].bias) for r in srra.srra)
    assert srra.srra[0].A.shape == (tiny_clip.visual.proj.shape[0], 4)


def test_tokens_replaced_in_mmrl_and_composed_in_mmrlpp(tiny_clip):
    x = torch.arange(2 * 9 * 64, dtype=torch.float32).reshape(2, 9, 64)
    tok = torch.full((5, 64), -1.0)
    out = make(tiny_clip, "MMRL")._compose(x, tok, 7)
    assert torch.equal(out[:, 1:6], tok.expand(2, 5, 64))
    assert torch.equal(out[:, :1], x[:, :1]) and torch.equal(out[:, 6:], x[:, 6:])
    out = make(tiny_clip, "MMRLpp", beta=0.25)._compose(x, tok, 7)
    assert torch.allclose(out[:, 1:6], 0.25 * tok + 0.75 * x[:, 1:6])
    assert torch.equal(out[:, 6:], x[:, 6:])


def test_decoupled_test_logits():
    assert select_test_logits("B2N", "base", "EuroSAT") == "fused"
    assert select_test_logits("B2N", "new", "EuroSAT") == "class"
    assert select_test_logits("B2N", "all", "EuroSAT") == "class"
    assert select_test_logits("FS", "all", "DescribableTextures") == "fused"
    assert select_test_logits("CD", "all", "ImageNet") == "fused"
    for name in ("ImageNetV2", "ImageNetA", "Caltech101"):
        assert select_test_logits("CD", "all", name) == "class"


def test_loss_formula_on_hand_made_tensors(tiny_clip):
    model = make(tiny_clip)
    g = torch.Generator().manual_seed(0)
    n = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=-1)
    f_c, f_r, gz, w, u = n(4, 32), n(4, 32), n(4, 32), n(5, 32), n(5, 32)
    y = torch.tensor([0, 1, 2, 4])
    loss, fused, _ = model.loss_from_features(f_c, f_r, w, gz, u, y)
    lc, lr = 100 * f_c @ w.t(), 100 * f_r @ w.t()
    want = (0.7 * F.cross_entropy(lc, y) + 0.3 * F.cross_entropy(lr, y)
            + 0.5 * (1 - (f_c * gz).sum(1).mean()) + 0.5 * (1 - (w * u).sum(1).mean()))
    assert torch.allclose(loss, want, atol=1e-5)
    assert torch.allclose(fused, 0.7 * lc + 0.3 * lr, atol=1e-4)


def test_text_groups_cut_prompts_exactly(tiny_clip):
    """Grouping by prompt length (several chunks) gives the same features as one chunk."""
    import mmrl.models.mmrl as mm
    classes = ["a", "a much longer class name with many words", "b c", "tiny", "x y z w"] * 3
    model = make(tiny_clip, classes=classes, template="a photo of a {}.")
    v, t = model.representation_learner()
    one = model.text_features(t)
    old = mm.TEXT_GROUP_SIZE
    try:
        mm.TEXT_GROUP_SIZE = 4
        model.set_prompts(model.prompts)
        many = model.text_features(t)
    finally:
        mm.TEXT_GROUP_SIZE = old
    assert torch.allclose(one, many, atol=1e-5)


def test_bf16_autocast_close_to_fp32(tiny_clip):
    model = make(tiny_clip)
    images = torch.randn(2, 3, 224, 224)
    model.eval()
    ref = model.forward_eval(images)["fused"]
    model.train(); model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_eval(images)["fused"].float()
    assert out.argmax(1).tolist() == ref.argmax(1).tolist() or (out - ref).abs().max() < 2.0
    assert (out - ref).abs().max() < 2.0  # logits are 100 x cosine


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
@pytest.mark.parametrize("pad_budget", [0, 3, 64])
def test_shared_text_head_and_last_layer_queries_equal_whole_blocks(tiny_clip, trainer, pad_budget, monkeypatch):
    """The shared head, padded length groups and last-layer query cuts change nothing."""
    import mmrl.models.mmrl as mm
    classes = ["a", "a much longer class name with many words", "b c", "tiny", "x y z w", "Sea_or_Lake"] * 3
    model = make(tiny_clip, trainer, classes=classes, template="a photo of a {}.", rep_layers=[3, 6, 7, 12],
                 rep_dim=48, beta=0.6)
    perturb(model)
    monkeypatch.setattr(mm, "TEXT_PAD_BUDGET", pad_budget)
    v, t = model.representation_learner()
    prefix = model.image_prefix(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2)))
    cut = (model.text_features(t), *model.image_features(prefix, v), model.zero_shot_image_features(prefix))
    model._blockwise = False
    whole = (model.text_features(t), *model.image_features(prefix, v), model.zero_shot_image_features(prefix))
    for a, b in zip(cut, whole):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_cached_text_prefix_survives_the_fp32_zero_shot_features(tiny_clip, monkeypatch):
    """A step reads the text prefix under autocast and, inside the fp32 zero-shot features, without:
    after the first step neither is recomputed (a recomputation copies from the host, which a
    CUDA graph capture refuses)."""
    import mmrl.models.towers as towers
    model = make(tiny_clip)
    calls = []
    orig = towers.text_embed
    monkeypatch.setattr(towers, "text_embed", lambda *a: calls.append(1) or orig(*a))
    images, labels = torch.randn(2, 3, 224, 224), torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.forward_train(images, labels)
        first = len(calls)
        model.forward_train(images, labels)
    assert first == 2 and len(calls) == first  # bf16 and fp32 prefix, each once
