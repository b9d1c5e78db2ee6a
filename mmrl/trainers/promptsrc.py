"""PromptSRC, self-regulating prompts (baselines.md §7): IVLP's prompts, regularised towards the
frozen model, and averaged over epochs by Gaussian prompt aggregation (GPA)."""
from __future__ import annotations

from torch import nn

from mmrl.models.gpa import GaussianPromptAggregation
from mmrl.trainers.base import EpochHook
from mmrl.trainers.ivlp import DeepPromptMethod
from mmrl.trainers.registry import register


class PromptAggregation(EpochHook):
    """GPA over the run: each epoch's parameters weighted in; the aggregate replaces them at the end."""

    def __init__(self, gpa: GaussianPromptAggregation, device):
        self.gpa, self.device = gpa, device

    def after_epoch(self, epoch: int, model: nn.Module) -> None:
        self.gpa.add_epoch(epoch, model.state_dict())

    def finish(self, model: nn.Module) -> None:
        model.load_state_dict(self.gpa.final_state())

    def state_dict(self) -> dict:
        return self.gpa.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.gpa.load_state_dict(state, self.device)


class PromptSRC(DeepPromptMethod):
    name = "PromptSRC"
    color = "tab:brown"
    has_overrides = True  # the few-shot GPA settings its config tells to set per dataset
    configs = {"b2n": "vit_b16_c2_ep20_batch4_4+4ctx", "fs": "vit_b16_c2_ep50_batch4_4+4ctx_few_shot",
               "cd": "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets",
               "dg": "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets"}

    def epoch_hook(self, cfg, model: nn.Module) -> PromptAggregation:
        return PromptAggregation(GaussianPromptAggregation.from_cfg(cfg), model.device)


register(PromptSRC())
