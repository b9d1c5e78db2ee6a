"""MaPLe, multi-modal prompt learning (baselines.md §5): vision prompts coupled to the text prompts."""
from __future__ import annotations

from mmrl.trainers.ivlp import DeepPromptMethod
from mmrl.trainers.registry import register


class MaPLe(DeepPromptMethod):
    name = "MaPLe"
    color = "tab:purple"
    model_folder = "MultiModalPromptLearner"
    configs = {"b2n": "vit_b16_c2_ep5_batch4_2ctx", "fs": None, "cd": "vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
               "dg": "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"}


register(MaPLe())
