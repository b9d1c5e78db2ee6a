"""Prototype of two further exact shortcuts for ``mmrl/models/mmrl.py`` (benchmarked, not used
by the package). bench/README.md explains them and carries the patch for the lead.

1. Shared text head. With the causal mask, positions 0..K of every prompt (BOT and the K
   representation tokens) see only each other, and BOT's state after layer J-1 is the same for
   every class. So the head [BOT, T^J] is one (1+K)-token sequence for all classes: it runs
   through layers J..L once, and each class runs only its own tokens 1..eot, attending to the
   head's keys/values. Length groups are cut finer (a padding budget instead of 256-class
   chunks). ImageNet-500: about 4,300 text tokens per layer instead of 9,196.
2. Last layer, needed queries only. Only the feature positions are read after the last layer
   (text: eot; image: CLS for the zero-shot branch, CLS and the K rep tokens for MMRL), so the
   last block computes keys/values for every token but queries, attention output and MLP only
   for those positions.

Both reorder floating-point sums only (checked against ``ReferenceMMRL`` by bench/step.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmrl.models import towers
from mmrl.models.mmrl import TEXT_GROUP_SIZE, MultiModalRepresentationLearner

PAD_BUDGET = 64  # padded text tokens a length group may carry (fewer, larger passes)


def block_supported(blk: nn.Module) -> bool:
    """open_clip's ResidualAttentionBlock with a packed, biased, dropout-free self-attention."""
    attn = getattr(blk, "attn", None)
    return (isinstance(attn, nn.MultiheadAttention) and attn._qkv_same_embed_dim and attn.in_proj_bias is not None
            and attn.bias_k is None and not attn.add_zero_attn and attn.dropout == 0.0
            and not hasattr(blk, "ln_1_kv") and all(hasattr(blk, n) for n in ("ln_1", "ls_1", "ln_2", "mlp", "ls_2")))


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, t, e = x.shape
    return x.transpose(1, 2).reshape(b, t, h * e)


def _proj(blk: nn.Module, normed: torch.Tensor, part: slice) -> torch.Tensor:
    """Rows ``part`` of the packed q/k/v projection (q = [0:D], k = [D:2D], v = [2D:3D])."""
    return F.linear(normed, blk.attn.in_proj_weight[part], blk.attn.in_proj_bias[part])


def _finish(blk: nn.Module, x_q: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            mask: torch.Tensor | None) -> torch.Tensor:
    """Attention of queries q over (k, v), then residual, MLP, residual for the query tokens x_q."""
    heads = blk.attn.num_heads
    o = F.scaled_dot_product_attention(_split(q, heads), _split(k, heads), _split(v, heads), attn_mask=mask)
    x = x_q + blk.ls_1(blk.attn.out_proj(_merge(o)))
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


def block_first_queries(blk: nn.Module, x: torch.Tensor, n_queries: int) -> torch.Tensor:
    """The block's output at positions 0..n_queries-1 of x (no mask), keys/values from all of x."""
    d = x.shape[-1]
    normed = blk.ln_1(x)
    q = _proj(blk, normed[:, :n_queries], slice(0, d))
    kv = _proj(blk, normed, slice(d, 3 * d))
    k, v = kv.chunk(2, dim=-1)
    return _finish(blk, x[:, :n_queries], q, k, v, None)


class ProposedMMRL(MultiModalRepresentationLearner):
    """The lead's fast path with the two shortcuts above (same parameters, same results)."""

    def _supported(self) -> bool:
        blocks = list(self.clip.transformer.resblocks) + list(self.clip.visual.transformer.resblocks)
        return all(block_supported(b) for b in blocks)

    # -- text ---------------------------------------------------------------------------------
    def length_groups(self) -> list[tuple[torch.Tensor, int]]:
        """Classes sorted by end-of-text position and cut into groups (each with its longest eot):
        a group grows while it pads at most PAD_BUDGET tokens and holds at most TEXT_GROUP_SIZE
        classes. Exact lengths would pad nothing but cost one tiny pass per length."""
        eot = self.prompts.eot
        order = torch.argsort(eot, stable=True).tolist()
        groups: list[list[int]] = []
        for c in order:
            g = groups[-1] if groups else None
            if g is not None and len(g) < TEXT_GROUP_SIZE:
                longest = int(eot[c])  # sorted: the newcomer is the longest
                if sum(longest - int(eot[i]) for i in g) <= PAD_BUDGET:
                    g.append(c)
                    continue
            groups.append([c])
        return [(torch.tensor(g), int(eot[g].max())) for g in groups]

    def _head_keys_values(self, bot: torch.Tensor, t_tokens: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the shared head [BOT, T^J] through layers J..L once; per layer the (k, v) of its input."""
        blocks = self.clip.transformer.resblocks
        k = self.spec.n_rep_tokens
        head = torch.cat([bot, t_tokens[0].to(bot.dtype).unsqueeze(0)], dim=1)   # (1, 1+K, D)
        d = head.shape[-1]
        mask = towers.causal_mask(1 + k, head.device, head.dtype)
        kvs = []
        for layer in range(self.J, self.n_layers + 1):
            slot = self.layer_slot.get(layer)
            if slot is not None and layer != self.J:
                head = self._compose(head, t_tokens[slot], layer)
            blk = blocks[layer - 1]
            normed = blk.ln_1(head)
            kv = _proj(blk, normed, slice(d, 3 * d))
            kvs.append(kv.chunk(2, dim=-1))
            if layer < self.n_layers:  # the head's own output after the last layer is never read
                head = _finish(blk, head, _proj(blk, normed, slice(0, d)), *kvs[-1], mask)
        return kvs

    def text_features(self, t_tokens: list[torch.Tensor]) -> torch.Tensor:
        if not self._supported():
            return super().text_features(t_tokens)
        blocks = self.clip.transformer.resblocks
        prefix = self._prefix_states()
        hk = self.spec.n_rep_tokens + 1
        kvs = self._head_keys_values(prefix[:1, :1], t_tokens)
        feats = []
        for idx, longest in self.length_groups():
            x = prefix[idx, 1:longest + 1]      # each class's own tokens 1..eot (+ padding up to the longest)
            n, t, d = x.shape
            last = self.prompts.eot[idx].to(x.device) - 1   # eot's index in x
            rows = torch.arange(n, device=x.device)
            # tail token i sees the whole head and tail tokens 0..i
            mask = torch.full((t, hk + t), float("-inf"), device=x.device, dtype=x.dtype).triu_(hk + 1)
            for layer in range(self.J, self.n_layers + 1):
                blk = blocks[layer - 1]
                h_k, h_v = kvs[layer - self.J]
                normed = blk.ln_1(x)
                k_t, v_t = _proj(blk, normed, slice(d, 3 * d)).chunk(2, dim=-1)
                k = torch.cat([h_k.expand(n, -1, -1), k_t], dim=1)
                v = torch.cat([h_v.expand(n, -1, -1), v_t], dim=1)
                if layer < self.n_layers:
                    x = _finish(blk, x, _proj(blk, normed, slice(0, d)), k, v, mask)
                else:  # only each class's eot query is read after the last layer
                    q = _proj(blk, normed[rows, last].unsqueeze(1), slice(0, d))
                    x = _finish(blk, x[rows, last].unsqueeze(1), q, k, v, mask[last][:, None, None])
            feats.append((idx, towers.text_project(self.clip, x[:, 0])))
        return F.normalize(self.prompts.scatter(feats), dim=-1)

    # -- images -------------------------------------------------------------------------------
    def zero_shot_image_features(self, prefix: torch.Tensor) -> torch.Tensor:
        if not self._supported():
            return super().zero_shot_image_features(prefix)
        visual = self.clip.visual
        with torch.no_grad():
            x = towers.run_layers(visual.transformer, prefix, self.J, self.n_layers - 1)
            x = block_first_queries(visual.transformer.resblocks[self.n_layers - 1], x, 1)
            return F.normalize(towers.visual_project(visual, x[:, 0]), dim=-1)

    def image_features(self, prefix: torch.Tensor, v_tokens: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._supported():
            return super().image_features(prefix, v_tokens)
        k, visual, last = self.spec.n_rep_tokens, self.clip.visual, self.n_layers
        blocks = visual.transformer.resblocks
        x = torch.cat([prefix[:, :1], v_tokens[0].to(prefix.dtype).unsqueeze(0).expand(prefix.shape[0], -1, -1),
                       prefix[:, 1:]], dim=1)
        for layer in range(self.J, last + 1):
            slot = self.layer_slot.get(layer)
            if slot is not None and layer != self.J:
                x = self._compose(x, v_tokens[slot], layer)
            x = (towers.run_layer(visual.transformer, x, layer) if layer < last
                 else block_first_queries(blocks[layer - 1], x, 1 + k))
        f_c = towers.visual_project(visual, x[:, 0])
        rep = visual.ln_post(x[:, 1:1 + k]).mean(dim=1)
        f_r = rep @ self.image_encoder.matrix(visual.proj).to(rep.dtype)
        return F.normalize(f_c, dim=-1), F.normalize(f_r, dim=-1)
