"""The fast model against /work/shared/spec/mmrl.md computed a third way: open_clip's own
encode_image / encode_text, with the representation tokens inserted by hooks before the
listed layers and removed after the last one, and every trainable formula (F^l, SRRA, P_rep,
loss) written from the raw parameters. Shares no code with mmrl.models.reference, so a
misreading present in both the fast path and the reference shows here."""
import open_clip
import pytest
import torch
import torch.nn.functional as F

from mmrl.models.mmrl import ArchSpec, Behaviour, MultiModalRepresentationLearner
from mmrl.models.prompts import Prompts

CLASSES = ["Sea_or_Lake", "a much longer class name", "Forest", "x y"]
TEMPLATE = "a photo of a {}."
LAYERS = [3, 5, 6, 12]  # a gap (4) and a gap before the last listed layer


def spec_tokens(sd, trainer, n_layers):
    """T_v^l, T_t^l per listed layer, from the raw parameters (spec §1, §5)."""
    r = sd["representation_learner.compound_rep_tokens"]
    out = {}
    for side in ("v", "t"):
        if trainer == "MMRL":
            p = f"representation_learner.compound_rep_tokens_r2{side}proj"
            out[side] = [r @ sd[f"{p}.{i}.weight"].t() + sd[f"{p}.{i}.bias"] for i in range(n_layers)]
        else:
            p = f"representation_learner.srra_r2{side}proj"
            w = sd[f"{p}.weight"]
            out[side] = [r @ (w + sd[f"{p}.srra.{i}.A"] @ sd[f"{p}.srra.{i}.B"]).t() + sd[f"{p}.srra.{i}.bias"]
                         for i in range(n_layers)]
    return out["v"], out["t"]


def hooked(transformer, tokens, k, beta, trainer, captured, mask_len=None):
    """Pre-hooks that insert (first listed layer), replace (MMRL) or compose (MMRL++) the tokens;
    a hook on the last block that stores the K token states and drops them from the output."""
    handles = []
    blocks = transformer.resblocks
    bf = getattr(transformer, "batch_first", True)

    def nd(x):
        return x if bf else x.transpose(0, 1)

    for slot, layer in enumerate(LAYERS):
        def pre(module, args, kwargs, slot=slot, layer=layer):
            x = nd(args[0])
            t = tokens[slot].unsqueeze(0).expand(x.shape[0], -1, -1)
            if layer == LAYERS[0]:
                x = torch.cat([x[:, :1], t, x[:, 1:]], dim=1)
            else:
                if trainer == "MMRLpp":
                    t = beta * t + (1 - beta) * x[:, 1:1 + k]
                x = torch.cat([x[:, :1], t, x[:, 1 + k:]], dim=1)
            return (nd(x),), kwargs
        handles.append(blocks[layer - 1].register_forward_pre_hook(pre, with_kwargs=True))
    if mask_len is not None:  # text: from J on, a (77+K) causal mask
        mask = torch.full((mask_len + k, mask_len + k), float("-inf")).triu(1)
        for layer in range(LAYERS[0], len(blocks) + 1):
            def swap(module, args, kwargs):
                return args, {**kwargs, "attn_mask": mask}
            handles.append(blocks[layer - 1].register_forward_pre_hook(swap, with_kwargs=True))

    def post(module, args, out):
        x = nd(out)
        captured.append(x[:, 1:1 + k])
        return nd(torch.cat([x[:, :1], x[:, 1 + k:]], dim=1))
    handles.append(blocks[-1].register_forward_hook(post))
    return handles


def spec_forward(model, clip, images, labels, trainer, beta, alpha, lam):
    k = model.spec.n_rep_tokens
    sd = dict(model.named_parameters())
    v_tok, t_tok = spec_tokens(sd, trainer, len(LAYERS))
    ids = open_clip.tokenize([TEMPLATE.format(c.replace("_", " ")) for c in CLASSES])

    rep_states = []
    handles = hooked(clip.visual.transformer, v_tok, k, beta, trainer, rep_states)
    try:
        f_c = clip.encode_image(images)  # CLS after ln_post, times the frozen proj
    finally:
        for h in handles:
            h.remove()
    p_rep = sd["image_encoder.proj_rep"] if trainer == "MMRL" else clip.visual.proj + sd["image_encoder.A"] @ sd["image_encoder.B"]
    f_r = clip.visual.ln_post(rep_states[0]).mean(dim=1) @ p_rep

    handles = hooked(clip.transformer, t_tok, k, beta, trainer, [], mask_len=ids.shape[1])
    try:  # the last block's hook drops positions 1..K, so open_clip's argmax pooling reads eot + K
        w = clip.encode_text(ids)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        g = F.normalize(clip.encode_image(images), dim=-1)
        u = F.normalize(clip.encode_text(ids), dim=-1)
    f_c, f_r, w = (F.normalize(t, dim=-1) for t in (f_c, f_r, w))
    lc, lr = 100 * f_c @ w.t(), 100 * f_r @ w.t()
    loss = (alpha * F.cross_entropy(lc, labels) + (1 - alpha) * F.cross_entropy(lr, labels)
            + lam * (1 - F.cosine_similarity(f_c, g, dim=-1).mean())
            + lam * (1 - F.cosine_similarity(w, u, dim=-1).mean()))
    return loss, {"class": lc, "rep": lr, "fused": alpha * lc + (1 - alpha) * lr}


@pytest.fixture(scope="module")
def uneven_clip():
    """A tiny CLIP whose visual width, text width and joint dimension all differ (96, 64, 32),
    so a visual/text mix-up of widths or projections cannot pass."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = CLIP(32, vision_cfg=CLIPVisionCfg(layers=12, width=96, head_width=48, patch_size=32, image_size=224),
                    text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=2, layers=12),
                    quick_gelu=True)
    for p in clip.parameters():
        p.requires_grad_(False)
    return clip.eval()


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
@pytest.mark.parametrize("backbone", ["tiny_clip", "uneven_clip"])
def test_fast_model_equals_the_spec_computed_with_open_clip_hooks(request, backbone, trainer):
    clip = request.getfixturevalue(backbone)
    torch.manual_seed(1)
    beta, alpha, lam = 0.6, 0.7, 0.5
    model = MultiModalRepresentationLearner(
        ArchSpec(trainer=trainer, rep_layers=LAYERS, rep_dim=24), clip,
        Prompts.build(CLASSES, TEMPLATE), Behaviour(alpha=alpha, beta=beta, reg_weight=lam))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # off the init: B = 0 in MMRL++ would hide the low-rank terms
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 3, 2])
    params = list(model.parameters())

    loss_f, fused_f, _ = model.forward_train(images, labels)
    grads_f = torch.autograd.grad(loss_f, params)
    loss_s, out_s = spec_forward(model, clip, images, labels, trainer, beta, alpha, lam)
    grads_s = torch.autograd.grad(loss_s, params)

    assert abs(loss_f.item() - loss_s.item()) < 1e-4
    assert (fused_f - out_s["fused"]).abs().max().item() < 1e-3
    for (name, _), gf, gs in zip(model.named_parameters(), grads_f, grads_s):
        assert ((gf - gs).norm() / gs.norm().clamp_min(1e-12)).item() < 1e-4, name
    model.eval()
    out_f = model.forward_eval(images)
    for head in ("class", "rep", "fused"):
        assert (out_f[head] - out_s[head].detach()).abs().max().item() < 1e-3, head


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_training_init_draws_the_spec_distributions(trainer):
    """Training starts from init_order's tensors (not the model's own initialisers): spec §1 and §5."""
    from mmrl.models.init_order import ClipDims, reference_initial_state
    dims = ClipDims(vision_width=96, vision_layers=2, patch_size=4, grid=2, text_width=80, text_layers=2,
                    vocab_size=10, context_length=8, embed_dim=48)
    d, n = 512, 7
    torch.manual_seed(0)
    st = reference_initial_state(ArchSpec(trainer=trainer, rep_dim=d), dims)
    r = st["representation_learner.compound_rep_tokens"]
    assert r.shape == (5, d) and abs(r.std().item() - 0.02) < 0.002 and abs(r.mean().item()) < 0.002
    bound = d ** -0.5  # nn.Linear(d, D*) default: weight and bias U(-1/sqrt(d), 1/sqrt(d))

    def uniform(t, b):
        return t.abs().max().item() <= b and abs(t.std().item() - b / 3 ** 0.5) < 0.1 * b / 3 ** 0.5

    for side, width in (("v", dims.vision_width), ("t", dims.text_width)):
        if trainer == "MMRL":
            p = f"representation_learner.compound_rep_tokens_r2{side}proj"
            w0, b0 = st[f"{p}.0.weight"], st[f"{p}.0.bias"]
            assert w0.shape == (width, d) and uniform(w0, bound) and b0.abs().max().item() <= bound
            assert all(torch.equal(st[f"{p}.{i}.weight"], w0) and torch.equal(st[f"{p}.{i}.bias"], b0) for i in range(n))
        else:
            p = f"representation_learner.srra_r2{side}proj"
            assert st[f"{p}.weight"].shape == (width, d) and uniform(st[f"{p}.weight"], bound)
            b0 = st[f"{p}.srra.0.bias"]
            for i in range(n):
                a = st[f"{p}.srra.{i}.A"]  # kaiming-uniform(a=sqrt(5)) on (D*, r): bound 1/sqrt(r)
                assert a.shape == (width, 4) and a.abs().max().item() <= 0.5 and a.std().item() > 0.2
                assert torch.equal(st[f"{p}.srra.{i}.B"], torch.zeros(4, d))
                assert torch.equal(st[f"{p}.srra.{i}.bias"], b0) and b0.shape == (width,)
            assert not torch.equal(st[f"{p}.srra.0.A"], st[f"{p}.srra.1.A"])
    if trainer == "MMRL":
        p_rep = st["image_encoder.proj_rep"]
        assert p_rep.shape == (dims.vision_width, dims.embed_dim)
        assert abs(p_rep.std().item() - dims.vision_width ** -0.5) < 0.1 * dims.vision_width ** -0.5
    else:
        a = st["image_encoder.A"]
        assert a.shape == (dims.vision_width, 64) and a.abs().max().item() <= 64 ** -0.5
        assert torch.equal(st["image_encoder.B"], torch.zeros(64, dims.embed_dim))
