"""CoCoOp, conditional context optimisation (baselines.md §3): a meta-net shifts the context per image."""
from __future__ import annotations

from mmrl.trainers.coop import PromptMethod
from mmrl.trainers.registry import register


class CoCoOp(PromptMethod):
    name = "CoCoOp"
    color = "tab:olive"
    configs = {"b2n": "vit_b16_c4_ep10_batch1_ctxv1", "cd": "vit_b16_c4_ep10_batch1_ctxv1",
               "dg": "vit_b16_c4_ep10_batch1_ctxv1", "fs": None}


register(CoCoOp())
