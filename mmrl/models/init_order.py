"""Initial trainable tensors drawn exactly where the authors' trainer draws them.

The order is in docs/protocol.md#the-random-streams-of-a-run.

The authors' ``build_model`` constructs two complete CLIP models in their format (the MMRL
branch, then the zero-shot model) before the representation learner. Every module initialiser
runs and draws from the global torch generator, although the checkpoint overwrites the result.
The vision tower of each build also draws the trainable projection (MMRL ``proj_rep``,
MMRL++ ``A``) between the visual and the text tower. Only the first build's value is kept.

``reference_initial_state`` re-enacts these draws on the global torch generator. Each
discarded draw is the same op (``uniform_`` or ``normal_``) on the same number of float32
elements, into a scratch buffer. The kept ones are drawn as the reference draws them. After
the call the generator is where the reference's is at the end of ``build_model``, and the
returned tensors are the reference's initial trainables. The op kinds and sizes follow the
authors' construction for the backbone's dimensions. They are independent of torch's
internal word counts, so this holds for any ViT backbone and torch version.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mmrl.errors import ConfigError
from mmrl.models.mmrl import ArchSpec

MLP_RATIO = 4  # the authors' CLIP blocks: c_fc is width -> 4 * width


@dataclass(frozen=True)
class ClipDims:
    """What the authors' CLIP construction derives from a ViT state dict."""
    vision_width: int
    vision_layers: int
    patch_size: int
    grid: int               # patches per side: positional embedding has grid**2 + 1 rows
    text_width: int
    text_layers: int
    vocab_size: int
    context_length: int
    embed_dim: int

    @classmethod
    def of(cls, clip: nn.Module) -> "ClipDims":
        """Dimensions of an open_clip ViT CLIP (the project's frozen backbone)."""
        v = clip.visual
        width, _, patch, _ = v.conv1.weight.shape
        positions = v.positional_embedding.shape[0]
        proj = clip.text_projection
        embed = proj.shape[1] if isinstance(proj, torch.Tensor) else proj.out_features
        vocab, text_width = clip.token_embedding.weight.shape
        return cls(vision_width=width, vision_layers=len(v.transformer.resblocks), patch_size=patch,
                   grid=round(math.sqrt(positions - 1)), text_width=text_width,
                   text_layers=len(clip.transformer.resblocks), vocab_size=vocab,
                   context_length=clip.positional_embedding.shape[0], embed_dim=embed)


class _Discard:
    """Draws that only advance the generator: the reference's op on as many float32 elements."""

    def __init__(self) -> None:
        self._buf = torch.empty(0)

    def _view(self, n: int) -> torch.Tensor:
        if n > self._buf.numel():
            self._buf = torch.empty(n)
        return self._buf[:n]  # contiguous, like a freshly allocated tensor: same consumption

    def uniform(self, n: int) -> None:
        self._view(n).uniform_()

    def normal(self, n: int) -> None:
        self._view(n).normal_()

    def block(self, width: int) -> None:
        """One residual attention block: MHA's out_proj (Linear: weight, bias), in_proj_weight
        (xavier), then the MLP's c_fc and c_proj Linears (weight, bias each)."""
        hidden = MLP_RATIO * width
        for n in (width * width, width, 3 * width * width, hidden * width, hidden, width * hidden, width):
            self.uniform(n)


def _kaiming_uniform(rows: int, cols: int) -> torch.Tensor:
    t = torch.empty(rows, cols)
    nn.init.kaiming_uniform_(t, a=math.sqrt(5))
    return t


def _rep_projection(spec: ArchSpec, d: ClipDims) -> torch.Tensor:
    """The trainable drawn inside the vision tower: MMRL ``proj_rep``, MMRL++ ``A``."""
    if spec.trainer == "MMRL":
        return d.vision_width ** -0.5 * torch.randn(d.vision_width, d.embed_dim)
    return _kaiming_uniform(d.vision_width, spec.proj_lora_dim)


def _clip_build(spec: ArchSpec, d: ClipDims, scratch: _Discard) -> torch.Tensor:
    """One authors'-format CLIP construction ; returns its projection draw."""
    dv, dt = d.vision_width, d.text_width
    scratch.uniform(dv * 3 * d.patch_size ** 2)             # conv1 (no bias)
    scratch.normal(dv)                                      # class_embedding
    scratch.normal((d.grid ** 2 + 1) * dv)                  # visual positional_embedding
    for _ in range(d.vision_layers):
        scratch.block(dv)
    scratch.normal(dv * d.embed_dim)                        # visual proj
    kept = _rep_projection(spec, d)
    for _ in range(d.text_layers):
        scratch.block(dt)
    text_init_draws(d, scratch)
    return kept


def text_init_draws(d: ClipDims, scratch: _Discard) -> None:
    """The end of every CLIP construction, after the text blocks: the token embedding's own
    init, then CLIP's initialize_parameters (embeddings, each text block, text_projection)."""
    dt = d.text_width
    scratch.normal(d.vocab_size * dt)                       # nn.Embedding's own init
    scratch.normal(d.vocab_size * dt)
    scratch.normal(d.context_length * dt)
    for _ in range(d.text_layers):
        for n in (3 * dt * dt, dt * dt, MLP_RATIO * dt * dt, MLP_RATIO * dt * dt):
            scratch.normal(n)
    scratch.normal(dt * d.embed_dim)


def _linear(in_features: int, out_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    lin = nn.Linear(in_features, out_features)  # weight then bias, torch's default initialiser
    return lin.weight.detach(), lin.bias.detach()


def _learner(spec: ArchSpec, d: ClipDims, projection: torch.Tensor) -> dict[str, torch.Tensor]:
    """The representation learner (tokens, visual then text aligners) and the kept projection, by name."""
    n = len(spec.rep_layers)
    out = {"representation_learner.compound_rep_tokens": torch.empty(spec.n_rep_tokens, spec.rep_dim).normal_(std=0.02)}
    w_v, b_v = _linear(spec.rep_dim, d.vision_width)
    w_t, b_t = _linear(spec.rep_dim, d.text_width)
    if spec.trainer == "MMRL":
        for side, (w, b) in (("v", (w_v, b_v)), ("t", (w_t, b_t))):
            for i in range(n):  # deep copies of one Linear: every layer starts identical
                out[f"representation_learner.compound_rep_tokens_r2{side}proj.{i}.weight"] = w.clone()
                out[f"representation_learner.compound_rep_tokens_r2{side}proj.{i}.bias"] = b.clone()
        out["image_encoder.proj_rep"] = projection
        return out
    res = spec.res_lora_dim
    a_v = [_kaiming_uniform(d.vision_width, res) for _ in range(n)]   # all visual A's, then all text A's
    a_t = [_kaiming_uniform(d.text_width, res) for _ in range(n)]
    for side, w, b, a_list in (("v", w_v, b_v, a_v), ("t", w_t, b_t, a_t)):
        prefix = f"representation_learner.srra_r2{side}proj"
        out[f"{prefix}.weight"] = w.clone()
        for i, a in enumerate(a_list):
            out[f"{prefix}.srra.{i}.A"] = a
            out[f"{prefix}.srra.{i}.B"] = torch.zeros(res, spec.rep_dim)
            out[f"{prefix}.srra.{i}.bias"] = b.clone()
    out["image_encoder.A"] = projection
    out["image_encoder.B"] = torch.zeros(spec.proj_lora_dim, d.embed_dim)
    return out


def reference_initial_state(spec: ArchSpec, dims: ClipDims) -> dict[str, torch.Tensor]:
    """Draw, on the global torch generator and in the reference's order, everything its
    ``build_model`` draws; return the initial trainable tensors by state-dict name."""
    if spec.trainer not in ("MMRL", "MMRLpp"):
        raise ConfigError(f"trainer {spec.trainer!r} has no reference initialisation order; a trainable "
                          f"method must define the order its reference draws in (mmrl/models/init_order.py)")
    scratch = _Discard()
    projection = _clip_build(spec, dims, scratch)  # build #1: the MMRL branch; its projection is kept
    _clip_build(spec, dims, scratch)               # build #2: the frozen zero-shot model
    del scratch
    return _learner(spec, dims, projection)
