"""CoOp, CoCoOp and KgCoOp computed straightforwardly, as the official code does (spec
baselines.md §2-§4): their own CLIP copies (KgCoOp: a second one for the hand-crafted
features, computed once at construction), prompt prefix/suffix embeddings built once,
prompts assembled class by class, the full 77-token text every call, the whole image tower
with autograd on, and CoCoOp's text passes one image at a time. No shortcuts: the fast
models of ``mmrl.models.coop`` are checked against this. It shares the learned tensors of a
fast model, so logits, loss and gradients can be compared tensor by tensor.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mmrl.models.coop import CoCoOp, KgCoOp, PromptedCLIP, bpe_length
from mmrl.models.prompts import tokenize


class ReferencePrompted(nn.Module):
    def __init__(self, fast: PromptedCLIP):
        super().__init__()
        self.fast = fast  # only for its learned tensors and settings
        self.clip = copy.deepcopy(fast.clip)
        for p in self.clip.parameters():
            p.requires_grad_(False)
        spec = fast.spec
        names = [n.replace("_", " ") for n in fast.classnames]
        prefix = spec.ctx_init or " ".join(["X"] * spec.n_ctx)
        device = self.clip.token_embedding.weight.device
        self.ids = tokenize([f"{prefix} {name}." for name in names]).to(device)
        with torch.no_grad():
            embedding = self.clip.token_embedding(self.ids)
        self.token_prefix = embedding[:, :1]
        self.token_suffix = embedding[:, 1 + spec.n_ctx:]
        self.name_lens = [bpe_length(name) for name in names]
        self.u = None
        if isinstance(fast, KgCoOp):
            clip_kg = copy.deepcopy(fast.clip)  # KgCoOp's second CLIP
            with torch.no_grad():
                u = clip_kg.encode_text(fast.hand_crafted.ids.to(device))
            self.u = u / u.norm(dim=-1, keepdim=True)

    def prompts(self, ctx: torch.Tensor) -> torch.Tensor:
        """The C input sequences (77 rows each) for context ctx ((M, D) or (C, M, D))."""
        n_cls = self.token_prefix.shape[0]
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.token_suffix
        position = self.fast.spec.class_token_position
        if position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        half = ctx.shape[1] // 2
        out = []
        for i, nl in enumerate(self.name_lens):
            name, rest = suffix[i:i + 1, :nl], suffix[i:i + 1, nl:]
            if position == "middle":
                out.append(torch.cat([prefix[i:i + 1], ctx[i:i + 1, :half], name, ctx[i:i + 1, half:], rest], dim=1))
            else:
                out.append(torch.cat([prefix[i:i + 1], name, ctx[i:i + 1], rest], dim=1))
        return torch.cat(out, dim=0)

    def text_encoder(self, prompts: torch.Tensor) -> torch.Tensor:
        clip = self.clip
        x = prompts + clip.positional_embedding
        x = clip.transformer(x, attn_mask=clip.attn_mask)
        x = clip.ln_final(x)
        return x[torch.arange(x.shape[0]), self.ids.argmax(dim=-1)] @ clip.text_projection

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        f = self.clip.encode_image(images)
        return f / f.norm(dim=-1, keepdim=True)

    def logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, normalised text features; None for CoCoOp, whose text features are per image)."""
        scale = self.clip.logit_scale.exp()
        f = self.image_features(images)
        pl = self.fast.prompt_learner
        if isinstance(self.fast, CoCoOp):
            ctx_shifted = pl.ctx.unsqueeze(0) + pl.meta_net(f).unsqueeze(1)
            rows = []
            for ctx_i, f_i in zip(ctx_shifted, f):
                w = self.text_encoder(self.prompts(ctx_i))
                w = w / w.norm(dim=-1, keepdim=True)
                rows.append(scale * f_i @ w.t())
            return torch.stack(rows), None
        w = self.text_encoder(self.prompts(pl.ctx))
        w = w / w.norm(dim=-1, keepdim=True)
        return scale * f @ w.t(), w

    def forward_train(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, w = self.logits(images)
        loss = F.cross_entropy(logits, labels)
        if self.u is not None:
            cos = nn.CosineSimilarity(dim=1, eps=1e-07)
            u = self.u / self.u.norm(dim=-1, keepdim=True)
            loss = loss + self.fast.w * (1.0 - torch.mean(cos(w, u)))
        return loss, logits
