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
            feats = []
            for idx, length in self.prompts.groups(256):
                ids = self.prompts.ids[idx, :length].to(self._device_probe.device)
                x = towers.text_embed(self.clip, ids)
                x = towers.run_layers(self.clip.transformer, x, 1, towers.num_layers(self.clip),
                                      towers.causal_mask(length, x.device, x.dtype))
                eot = self.prompts.eot[idx].to(x.device)
                feats.append((idx, towers.text_project(self.clip, x[torch.arange(len(idx)), eot])))
            return F.normalize(self.prompts.scatter(feats).float(), dim=-1)
        return self._cache.get("text", self._device_probe.device, compute)

    @torch.no_grad()
    def forward_eval(self, images: torch.Tensor, prefix=None) -> dict[str, torch.Tensor]:
        g = F.normalize(self.clip.encode_image(images), dim=-1)
        logits = LOGIT_SCALE * g @ self.text_features().to(g.dtype).t()
        return {"class": logits, "fused": logits}
