"""The reference's initial trainable tensors for IVLP, MaPLe and PromptSRC, drawn where its
``build_model`` draws them (the same approach as ``mmrl.models.init_order`` for MMRL).

Construction in the reference, on the global torch generator, in this order:
- IVLP: one CLIP of its prompted format. The vision tower draws ``VPT`` (N(0, 0.02^2)) right
  after ``conv1``, and every block i in 1..depth-1 of either tower draws its ``VPT_shallow``
  right after the block's own initialisers. Then the prompt learner: ``ctx`` from the phrase
  (no draw) or N(0, 0.02^2) in the model dtype.
- PromptSRC: as IVLP, then (after ``ctx``) two plain CLIP builds: the fp32 text model of the
  template ensemble and the zero-shot image tower. Their values are discarded.
- MaPLe: one plain CLIP build, then the prompt learner: ``ctx`` as above, ``proj``
  (Linear text -> vision: weight then bias, then cast to fp16), the depth-1 deep text prompts
  (each N(0, 0.02^2)), and one Linear whose deep copies are every layer's projection.
In an fp16 run (every shipped config) ``ctx`` is an fp16 tensor (its phrase embedding rounded,
or drawn in fp16) and MaPLe's ``proj`` is fp16 whatever the precision; the returned tensors
hold those values in fp32, the dtype this harness trains in.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mmrl.models.deep_prompts import DeepPromptModel, phrase_context
from mmrl.models.init_order import ClipDims, _Discard, text_init_draws

PROMPT_STD = 0.02


def _prompt(rows: int, width: int) -> torch.Tensor:
    return torch.empty(rows, width).normal_(std=PROMPT_STD)


def _linear(in_features: int, out_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.empty(out_features, in_features)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # torch's Linear default: weight, then bias
    bound = 1 / math.sqrt(in_features)
    bias = torch.empty(out_features).uniform_(-bound, bound)
    return weight, bias


def clip_build_draws(d: ClipDims, scratch: _Discard, vision: tuple[int, int] = (0, 0),
                text: tuple[int, int] = (0, 0)) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One reference-format CLIP construction. ``vision``/``text`` = (depth, n_ctx) of its prompts
    (0 depth: a plain CLIP). Returns the vision prompts (VPT, then blocks 1..) and the text
    prompts (blocks 1..) it draws."""
    v_depth, v_ctx = vision
    t_depth, t_ctx = text
    dv, dt = d.vision_width, d.text_width
    kept_v: list[torch.Tensor] = []
    kept_t: list[torch.Tensor] = []
    scratch.uniform(dv * 3 * d.patch_size ** 2)             # conv1 (no bias)
    if v_depth >= 1:
        kept_v.append(_prompt(v_ctx, dv))                   # VPT
    scratch.normal(dv)                                      # class_embedding
    scratch.normal((d.grid ** 2 + 1) * dv)                  # visual positional_embedding
    for i in range(d.vision_layers):
        scratch.block(dv)
        if 1 <= i < v_depth:
            kept_v.append(_prompt(v_ctx, dv))               # that block's VPT_shallow
    scratch.normal(dv * d.embed_dim)                        # visual proj
    for i in range(d.text_layers):
        scratch.block(dt)
        if 1 <= i < t_depth:
            kept_t.append(_prompt(t_ctx, dt))
    text_init_draws(d, scratch)
    return kept_v, kept_t


def _ctx(model: DeepPromptModel, prec: str) -> torch.Tensor:
    """The prompt learner's ``ctx``: the phrase's embeddings (no draw) or a draw in the model dtype."""
    dtype = torch.float16 if prec == "fp16" else torch.float32  # fp32/amp: CLIP cast to fp32 first
    spec = model.spec
    phrase = phrase_context(model.clip, spec)
    if phrase is not None:
        return phrase.cpu().to(dtype).float()
    return torch.empty(spec.n_ctx_text, ClipDims.of(model.clip).text_width, dtype=dtype).normal_(std=PROMPT_STD).float()


def reference_initial_state(model: DeepPromptModel, prec: str = "fp16") -> dict[str, torch.Tensor]:
    """Draw, on the global torch generator and in the reference's order, everything its
    ``build_model`` draws for ``model``'s method and architecture; return the initial trainable
    tensors by ``model.state_dict()`` name. ``prec``: the reference's TRAINER.<method>.PREC."""
    spec = model.spec
    d = ClipDims.of(model.clip)
    scratch = _Discard()
    if spec.trainer == "MaPLe":
        clip_build_draws(d, scratch)
        out = {"ctx": _ctx(model, prec)}
        w, b = _linear(d.text_width, d.vision_width)
        out["proj.weight"], out["proj.bias"] = w.half().float(), b.half().float()
        for i in range(spec.depth_text - 1):
            out[f"compound_prompts_text.{i}"] = _prompt(spec.n_ctx_text, d.text_width)
        w, b = _linear(d.text_width, d.vision_width)
        for i in range(spec.depth_text - 1):
            out[f"compound_prompt_projections.{i}.weight"] = w.clone()
            out[f"compound_prompt_projections.{i}.bias"] = b.clone()
        return out
    vision, text = clip_build_draws(d, scratch, (spec.depth_vision, spec.n_ctx_vision), (spec.depth_text, spec.n_ctx_text))
    out = {"ctx": _ctx(model, prec)}
    if spec.trainer == "PromptSRC":
        clip_build_draws(d, scratch)  # the fp32 text model of the template ensemble
        clip_build_draws(d, scratch)  # the zero-shot image tower
    for i, t in enumerate(text):
        out[f"text_prompts.{i}"] = t
    if vision:
        out["vision_ctx"] = vision[0]
    for i, v in enumerate(vision[1:]):
        out[f"vision_prompts.{i}"] = v
    return out
