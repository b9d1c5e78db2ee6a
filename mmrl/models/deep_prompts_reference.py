"""IVLP, MaPLe and PromptSRC computed straightforwardly, as the reference code does: separate
CLIP copies (the prompted model; for PromptSRC also the zero-shot image tower and the fp32 text
model of the template ensemble), full 77-token text, every layer of both towers recomputed on
every call, prompts inserted inside the layer loop. The ensemble text features are computed
once, as the reference computes them at build time. No shortcuts: this is what the fast path
(``mmrl.models.deep_prompts``) is checked against. It shares the trainable tensors of a fast
model, so logits, loss and gradients can be compared tensor by tensor.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mmrl.models.deep_prompts import DeepPromptModel
from mmrl.models.prompts import tokenize
from mmrl.models.promptsrc_templates import PROMPTSRC_TEMPLATES


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


class ReferenceDeepPrompts(nn.Module):
    def __init__(self, fast: DeepPromptModel):
        super().__init__()
        self.fast = fast  # only for its trainable tensors, settings and class names
        self.clip_prompted = copy.deepcopy(fast.clip)
        copies = [self.clip_prompted]
        if fast.spec.trainer == "PromptSRC":
            self.zs_visual = copy.deepcopy(fast.clip.visual)
            self.clip_text_fp32 = copy.deepcopy(fast.clip)
            copies += [self.zs_visual, self.clip_text_fp32]
        for p in (p for m in copies for p in m.parameters()):
            p.requires_grad_(False)
        self._fixed = None

    def prompts(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per layer 1..depth, the text and vision tokens, formed from the fast model's tensors."""
        m, spec = self.fast, self.fast.spec
        if spec.trainer == "MaPLe":
            text = [m.ctx, *m.compound_prompts_text]
            vision = [F.linear(m.ctx, m.proj.weight, m.proj.bias)]
            for lin, p in zip(m.compound_prompt_projections, m.compound_prompts_text):
                vision.append(F.linear(p, lin.weight, lin.bias))
            return text, vision
        vision = [m.vision_ctx, *m.vision_prompts] if spec.depth_vision >= 1 else []
        return [m.ctx, *m.text_prompts], vision

    def text_features(self, text_tokens: list[torch.Tensor]) -> torch.Tensor:
        clip, spec = self.clip_prompted, self.fast.spec
        n = spec.n_ctx_text
        texts = [spec.prompt_prefix + " " + name.replace("_", " ") + "." for name in self.fast.classnames]
        ids = tokenize(texts).to(text_tokens[0].device)
        emb = clip.token_embedding(ids)
        ctx = text_tokens[0].unsqueeze(0).expand(len(texts), -1, -1)
        x = torch.cat([emb[:, :1], ctx, emb[:, 1 + n:]], dim=1) + clip.positional_embedding
        mask = torch.empty(77, 77, device=x.device).fill_(float("-inf")).triu_(1)
        for i, block in enumerate(clip.transformer.resblocks):
            if 1 <= i < len(text_tokens):  # block i is layer i + 1
                deep = text_tokens[i].unsqueeze(0).expand(len(texts), -1, -1)
                x = torch.cat([x[:, :1], deep, x[:, 1 + n:]], dim=1)
            x = block(x, attn_mask=mask)
        x = clip.ln_final(x)
        return _unit(x[torch.arange(len(texts)), ids.argmax(dim=-1)] @ clip.text_projection)

    @staticmethod
    def image_features(visual: nn.Module, images: torch.Tensor, vision_tokens: list[torch.Tensor]) -> torch.Tensor:
        b = images.shape[0]
        x = visual.conv1(images)
        x = x.reshape(b, x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([visual.class_embedding + torch.zeros(b, 1, x.shape[-1], device=x.device), x], dim=1)
        x = x + visual.positional_embedding
        if vision_tokens:
            x = torch.cat([x, vision_tokens[0].unsqueeze(0).expand(b, -1, -1)], dim=1)
        x = visual.ln_pre(x)
        for i, block in enumerate(visual.transformer.resblocks):
            if 1 <= i < len(vision_tokens):
                nv = vision_tokens[i].shape[0]
                x = torch.cat([x[:, :-nv], vision_tokens[i].unsqueeze(0).expand(b, -1, -1)], dim=1)
            x = block(x)
        return _unit(visual.ln_post(x[:, 0]) @ visual.proj)

    def fixed_embeddings(self) -> torch.Tensor:
        """PromptSRC: raw text features of every template, stacked C x 60 x D and averaged."""
        if self._fixed is None:
            names = [name.replace("_", " ") for name in self.fast.classnames]
            device = self.clip_text_fp32.positional_embedding.device
            with torch.no_grad():
                per_template = [self.clip_text_fp32.encode_text(tokenize([t.replace("{}", n) for n in names]).to(device))
                                .unsqueeze(1) for t in PROMPTSRC_TEMPLATES]
            self._fixed = torch.cat(per_template, dim=1).mean(dim=1)
        return self._fixed

    def logits(self, images: torch.Tensor):
        text_tokens, vision_tokens = self.prompts()
        w = self.text_features(text_tokens)
        f = self.image_features(self.clip_prompted.visual, images, vision_tokens)
        return self.clip_prompted.logit_scale.exp() * f @ w.t(), (w, f)

    def forward_train(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, (w, f) = self.logits(images)
        ce = F.cross_entropy(logits, labels)
        if self.fast.spec.trainer != "PromptSRC":
            return ce, logits
        fixed = _unit(self.fixed_embeddings())
        with torch.no_grad():
            g = self.image_features(self.zs_visual, images, [])
            zs_logits = self.clip_prompted.logit_scale.exp() * g @ fixed.t()
        beh = self.fast.behaviour
        l_text = (w - fixed).abs().mean() * beh.text_loss_weight
        l_image = (f - g).abs().mean() * beh.image_loss_weight
        log_p0 = zs_logits.log_softmax(dim=1)
        l_logits = (log_p0.exp() * (log_p0 - logits.log_softmax(dim=1))).sum() / logits.numel()
        return ce + (l_logits + l_text + l_image), logits
