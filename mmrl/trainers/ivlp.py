"""IVLP, independent vision-language prompting (baselines.md §6), and the machinery its deep-prompt
relatives MaPLe and PromptSRC share: config blocks, building with the reference's initial
tensors, our checkpoints and the official ones."""
from __future__ import annotations

import logging

from yacs.config import CfgNode as CN

from mmrl.models import deep_prompts as dp
from mmrl.models.deep_prompts_init import reference_initial_state
from mmrl.models.deep_prompts_official import clip_with_frozen, from_official
from mmrl.trainers.base import (PRECISIONS, BuildContext, EvalCheckpoint, Method, check_ours_is_of,
                                note_config_not_used)
from mmrl.trainers.registry import register
from mmrl.utils.rng import isolated_rng

log = logging.getLogger("mmrl.engine")


class DeepPromptMethod(Method):
    model_folder = "VLPromptLearner"

    @property
    def block_key(self) -> str:
        return dp.CONFIG_KEY[self.name]

    def config_block(self) -> CN:
        return dp.config_block(self.name)

    def enumerated_keys(self) -> dict[str, tuple]:
        return {"PREC": PRECISIONS}

    def _model(self, ctx: BuildContext, spec: dp.DeepPromptArch, clip=None) -> dp.DeepPromptModel:
        clip = clip if clip is not None else ctx.backbone(spec.backbone)
        with isolated_rng():  # its own initialisers draw in another order than the reference's
            return dp.build_deep_prompt_model(spec, clip, ctx.classnames, dp.DeepPromptBehaviour.from_cfg(ctx.cfg))

    def build(self, ctx: BuildContext, *, for_training: bool) -> dp.DeepPromptModel:
        model = self._model(ctx, dp.DeepPromptArch.from_cfg(ctx.cfg))
        if for_training:  # the reference's build-time draws, in its order (on the run's stream)
            model.load_state_dict(reference_initial_state(model, prec=self.precision(ctx.cfg)))
        return model.to(ctx.device)

    def build_for_eval(self, ctx: BuildContext, ck: EvalCheckpoint) -> dp.DeepPromptModel:
        if check_ours_is_of(ck, self.name):  # ours: the learned tensors and the architecture
            note_config_not_used(ck, ck.arch, dp.DeepPromptArch.from_cfg(ctx.cfg).to_dict())
            model = self._model(ctx, dp.DeepPromptArch.from_dict(ck.arch))
            model.load_state_dict(ck.state_dict, strict=True)
            return model.to(ctx.device)
        current = dp.DeepPromptArch.from_cfg(ctx.cfg)
        clip = ctx.backbone(current.backbone)
        official = from_official(self.name, ck.state_dict, current, clip, source=ck.path)
        if official.frozen_required:
            # its aggregation also moved the frozen weights: every tensor comes from the file
            clip = clip_with_frozen(clip, official.frozen, source=ck.path).to(ctx.device)
            ck.notes["frozen_weights"] = "from the checkpoint (all tensors of the file, as the official code)"
            log.info("%s: the frozen CLIP weights too are taken from %s", self.name, ck.path)
        if official.ignored:
            ck.notes["ignored"] = official.ignored
        model = self._model(ctx, official.arch, clip)
        model.load_state_dict(official.state_dict, strict=True)
        return model.to(ctx.device)


class IVLP(DeepPromptMethod):
    name = "IVLP"
    color = "tab:pink"
    # PromptSRC's IVLP baseline (4+4 tokens, depth 9, 20 epochs); MaPLe's 2+2 variant ships too
    configs = {"b2n": "vit_b16_c2_ep20_batch4_4+4ctx", "fs": None, "cd": None, "dg": None}


register(IVLP())
