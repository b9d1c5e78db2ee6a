"""Zero-shot CLIP (evaluation only): the reference row of every table.

Same per-dataset template as MMRL, logits = 100 * cos(image, text)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmrl.models import towers
from mmrl.models.arith import ActivationCache
from mmrl.models.mmrl import LOGIT_SCALE
from mmrl.models.prompts import Prompts


class ZeroshotCLIP(nn.Module):
    def __init__(self, clip: nn.Module, prompts: Prompts):
        super().__init__()
        object.__setattr__(self, "clip", clip)
        self.prompts = prompts
        self._cache = ActivationCache()
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)

    @torch.no_grad()
    def text_features(self) -> torch.Tensor:
        def compute():
            device = self._device_probe.device
            plan = self.prompts.plan(self.prompts.groups(256), device)
            feats = []
            for idx, length, eot in plan.groups:
                x = towers.text_embed(self.clip, self.prompts.ids[:, :length].to(device)[idx])
                x = towers.run_layers(self.clip.transformer, x, 1, towers.num_layers(self.clip),
                                      towers.causal_mask(length, x.device, x.dtype))
                feats.append(towers.text_project(self.clip, x[torch.arange(len(idx), device=device), eot]))
            return F.normalize(plan.scatter(feats).float(), dim=-1)
        return self._cache.get("text", self._device_probe.device, compute)

    @torch.no_grad()
    def forward_eval(self, images: torch.Tensor, prefix=None) -> dict[str, torch.Tensor]:
        g = F.normalize(self.clip.encode_image(images), dim=-1)
        logits = LOGIT_SCALE * g @ self.text_features().to(g.dtype).t()
        return {"class": logits, "fused": logits}
