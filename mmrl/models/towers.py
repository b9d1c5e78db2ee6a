"""Run open_clip's CLIP towers layer by layer, so tokens can be inserted between layers.

Layers are numbered 1..L as in mmrl.md; layer l is ``resblocks[l - 1]``.
"""
from __future__ import annotations

import torch
from torch import nn


def num_layers(tower: nn.Module) -> int:
    return len(tower.transformer.resblocks) if hasattr(tower, "transformer") else 0


def _batch_first(transformer: nn.Module) -> bool:
    return getattr(transformer, "batch_first", True)


def run_layers(transformer: nn.Module, x: torch.Tensor, first: int, last: int,
               attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Apply layers first..last (1-based, inclusive) to x of shape (N, T, D)."""
    if first > last:
        return x
    bf = _batch_first(transformer)
    if not bf:
        x = x.transpose(0, 1)
    for block in transformer.resblocks[first - 1:last]:
        x = block(x, attn_mask=attn_mask)
    if not bf:
        x = x.transpose(0, 1)
    return x


def run_layer(transformer: nn.Module, x: torch.Tensor, layer: int,
              attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    return run_layers(transformer, x, layer, layer, attn_mask)


def visual_embed(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patchify, prepend CLS, add positional embedding, ln_pre: (B, 1 + P, Dv)."""
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    return visual.ln_pre(x)


def visual_project(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """ln_post then the frozen projection, for tokens of shape (..., Dv)."""
    return visual.ln_post(tokens) @ visual.proj


def text_embed(clip: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    x = clip.token_embedding(ids)
    return x + clip.positional_embedding[: ids.shape[1]].to(x.dtype)


def causal_mask(n: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """n x n additive mask: each position sees itself and everything before it."""
    return torch.full((n, n), float("-inf"), device=device, dtype=dtype).triu_(1)


def text_project(clip: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = clip.ln_final(x)
    proj = clip.text_projection
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def visual_width(clip: nn.Module) -> int:
    return clip.visual.conv1.out_channels


def text_width(clip: nn.Module) -> int:
    return clip.token_embedding.embedding_dim


def embed_dim(clip: nn.Module) -> int:
    return clip.visual.proj.shape[1]
