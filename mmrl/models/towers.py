"""Run open_clip's CLIP towers layer by layer, so tokens can be inserted between layers.

Layers are numbered 1..L as in docs/method.md; layer l is ``resblocks[l - 1]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
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


# -- one block, computed for a subset of queries (docs/method.md#exact-shortcuts) ---------------
# open_clip's ResidualAttentionBlock is x + ls_1(attn(ln_1(x))) then x + ls_2(mlp(ln_2(x))).
# Written out so that keys/values can come from elsewhere (a shared text head) and queries can
# be restricted to the positions that are read afterwards.

def block_supported(blk: nn.Module) -> bool:
    """A ResidualAttentionBlock with packed, biased, dropout-free self-attention."""
    attn = getattr(blk, "attn", None)
    return (isinstance(attn, nn.MultiheadAttention) and attn._qkv_same_embed_dim and attn.in_proj_bias is not None
            and attn.bias_k is None and not attn.add_zero_attn and attn.dropout == 0.0
            and not hasattr(blk, "ln_1_kv") and all(hasattr(blk, n) for n in ("ln_1", "ls_1", "ln_2", "mlp", "ls_2")))


def project_q(blk: nn.Module, normed: torch.Tensor) -> torch.Tensor:
    d = normed.shape[-1]
    return F.linear(normed, blk.attn.in_proj_weight[:d], blk.attn.in_proj_bias[:d])


def project_kv(blk: nn.Module, normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = normed.shape[-1]
    kv = F.linear(normed, blk.attn.in_proj_weight[d:], blk.attn.in_proj_bias[d:])
    return kv[..., :d], kv[..., d:]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


def block_finish(blk: nn.Module, x_q: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 attn_mask: torch.Tensor | None) -> torch.Tensor:
    """The block's output for query tokens x_q (B, Tq, D), given their q and the keys/values."""
    heads = blk.attn.num_heads
    o = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads),
                                       attn_mask=attn_mask)
    o = o.transpose(1, 2).reshape(x_q.shape[0], x_q.shape[1], -1)
    x = x_q + blk.ls_1(blk.attn.out_proj(o))
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


def block_first_queries(blk: nn.Module, x: torch.Tensor, n_queries: int) -> torch.Tensor:
    """The block's output at positions 0..n_queries-1 only (no mask; keys/values from all of x)."""
    normed = blk.ln_1(x)
    k, v = project_kv(blk, normed)
    return block_finish(blk, x[:, :n_queries], project_q(blk, normed[:, :n_queries]), k, v, None)
