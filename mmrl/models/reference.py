"""The spec computed straightforwardly, as the authors' code does: two separate CLIP copies
(one for the MMRL branch, one frozen zero-shot model), full 77-token text, every layer
recomputed on every call, except the frozen zero-shot text features, which the authors'
trainer computes once per run (``text_features_clip``) and so does this.  No shortcuts: this is what the fast path is checked against and
what the benchmarks compare with.  It shares the trainable modules of a fast model, so
logits, loss and gradients can be compared tensor by tensor.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mmrl.models.mmrl import LOGIT_SCALE, MultiModalRepresentationLearner


class ReferenceMMRL(nn.Module):
    def __init__(self, fast: MultiModalRepresentationLearner):
        super().__init__()
        self.fast = fast  # only for its trainable modules, settings and prompts
        self.clip_mmrl = copy.deepcopy(fast.clip)
        self.clip_zs = copy.deepcopy(fast.clip)
        for p in list(self.clip_mmrl.parameters()) + list(self.clip_zs.parameters()):
            p.requires_grad_(False)
        self._u = None  # zero-shot text features: once per run, as the authors' trainer does

    # The layer loop of docs/method.md#inserting-tokens, written out in full for one tower.
    def _tower(self, blocks, x, tokens, mask_fn):
        spec, beh = self.fast.spec, self.fast.behaviour
        k, layers = spec.n_rep_tokens, spec.rep_layers
        for layer in range(1, len(blocks) + 1):
            if layer == layers[0]:
                t = tokens[0].unsqueeze(0).expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, :1], t, x[:, 1:]], dim=1)
            elif layer in layers:
                t = tokens[layers.index(layer)].unsqueeze(0).expand(x.shape[0], -1, -1)
                if spec.trainer == "MMRLpp":
                    t = beh.beta * t + (1 - beh.beta) * x[:, 1:1 + k]
                x = torch.cat([x[:, :1], t, x[:, 1 + k:]], dim=1)
            x = blocks[layer - 1](x, attn_mask=mask_fn(x.shape[1], x))
        return x

    def text_features(self, t_tokens):
        clip = self.clip_mmrl
        ids = self.fast.prompts.ids.to(t_tokens[0].device)
        x = clip.token_embedding(ids) + clip.positional_embedding

        def mask(n, x):
            return torch.full((n, n), float("-inf"), device=x.device, dtype=x.dtype).triu(1)
        x = self._tower(clip.transformer.resblocks, x, t_tokens, mask)
        x = clip.ln_final(x)
        eot = ids.argmax(dim=-1) + self.fast.spec.n_rep_tokens
        w = x[torch.arange(x.shape[0]), eot] @ clip.text_projection
        return F.normalize(w, dim=-1)

    def image_features(self, images, v_tokens):
        v = self.clip_mmrl.visual
        x = v.conv1(images).flatten(2).permute(0, 2, 1)
        x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1).to(x.dtype), x], dim=1)
        x = v.ln_pre(x + v.positional_embedding)
        x = self._tower(v.transformer.resblocks, x, v_tokens, lambda n, x: None)
        k = self.fast.spec.n_rep_tokens
        f_c = v.ln_post(x[:, 0]) @ v.proj
        f_r = v.ln_post(x[:, 1:1 + k]).mean(dim=1) @ self.fast.image_encoder.matrix(v.proj)
        return F.normalize(f_c, dim=-1), F.normalize(f_r, dim=-1)

    def zero_shot(self, images):
        with torch.no_grad():
            g = self.clip_zs.encode_image(images, normalize=True)
            if self._u is None or self._u.device != images.device:
                with torch.autocast(images.device.type, enabled=False):  # built in fp32, before any autocast
                    self._u = self.clip_zs.encode_text(self.fast.prompts.ids.to(images.device), normalize=True)
        return g, self._u

    def logits(self, images):
        v_tokens, t_tokens = self.fast.representation_learner()
        f_c, f_r = self.image_features(images, v_tokens)
        w = self.text_features(t_tokens)
        lc, lr = LOGIT_SCALE * f_c @ w.t(), LOGIT_SCALE * f_r @ w.t()
        a = self.fast.behaviour.alpha
        return {"class": lc, "rep": lr, "fused": a * lc + (1 - a) * lr}, (f_c, f_r, w)

    def forward_train(self, images, labels):
        out, (f_c, f_r, w) = self.logits(images)
        g, u = self.zero_shot(images)
        a, lam = self.fast.behaviour.alpha, self.fast.behaviour.reg_weight
        loss = (a * F.cross_entropy(out["class"], labels) + (1 - a) * F.cross_entropy(out["rep"], labels)
                + lam * (1 - (f_c * g).sum(-1).mean()) + lam * (1 - (w * u).sum(-1).mean()))
        return loss, out["fused"]
