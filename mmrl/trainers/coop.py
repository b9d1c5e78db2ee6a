"""CoOp, context optimisation (baselines.md §2), and what its text-prompt relatives CoCoOp and
KgCoOp share: config blocks, the official initial tensors, our and the official checkpoints."""
from __future__ import annotations

from yacs.config import CfgNode as CN

from mmrl.models import coop as cp
from mmrl.models.coop_official import from_official, official_initial_state
from mmrl.trainers.base import (PRECISIONS, BuildContext, EvalCheckpoint, Method, check_ours_is_of, load_ours,
                                note_config_not_used)
from mmrl.trainers.registry import register
from mmrl.utils.rng import isolated_rng


class PromptMethod(Method):
    model_folder = "prompt_learner"

    @property
    def block_key(self) -> str:
        return cp.block_key(self.name)

    def config_blocks(self) -> dict[str, CN]:
        return cp.config_blocks(self.name)

    def enumerated_keys(self) -> dict[str, tuple]:
        keys = {"PREC": PRECISIONS}
        if self.block_key == "COOP":
            keys["CLASS_TOKEN_POSITION"] = cp.POSITIONS
        return keys

    def _model(self, ctx: BuildContext, spec: cp.PromptArch) -> cp.PromptedCLIP:
        clip = ctx.backbone(spec.backbone)
        with isolated_rng():  # its own initialisers draw in another order than the official code's
            return cp.model_from_cfg(ctx.cfg, spec, clip, ctx.classnames, ctx.template)

    def build(self, ctx: BuildContext, *, for_training: bool) -> cp.PromptedCLIP:
        spec = cp.PromptArch.from_cfg(ctx.cfg)
        model = self._model(ctx, spec)
        if for_training:  # the official build-time draws, in its order (on the run's stream)
            model.load_state_dict(official_initial_state(spec, model.clip, len(ctx.classnames),
                                                         self.precision(ctx.cfg)))
        return model.to(ctx.device)

    def build_for_eval(self, ctx: BuildContext, ck: EvalCheckpoint) -> cp.PromptedCLIP:
        if check_ours_is_of(ck, self.name):  # ours: the learned tensors and the architecture
            note_config_not_used(ck, ck.arch, cp.PromptArch.from_cfg(ctx.cfg).to_dict())
            model = self._model(ctx, cp.PromptArch.from_dict(ck.arch))
            load_ours(model, ck, len(ctx.classnames))
            return model.to(ctx.device)
        current = cp.PromptArch.from_cfg(ctx.cfg)
        clip = ctx.backbone(current.backbone)
        arch, state = from_official(ck.state_dict, current, clip, len(ctx.classnames), source=ck.path)
        model = self._model(ctx, arch)
        model.load_state_dict(state, strict=True)
        return model.to(ctx.device)


class CoOp(PromptMethod):
    name = "CoOp"
    color = "tab:green"
    configs = {"b2n": "vit_b16_ctxv1", "cd": "vit_b16_ep50_ctxv1", "dg": "vit_b16_ep50", "fs": "vit_b16"}

    def config_stem(self, protocol: str, stem: str, demo: bool, shots: int = 16) -> str:
        # its few-shot schedule depends on the shot count; ImageNet trains 50 epochs throughout
        if demo or protocol not in ("b2n", "fs"):
            return super().config_stem(protocol, stem, demo, shots)
        if stem == "imagenet":
            return "vit_b16_ep50_ctxv1" if protocol == "b2n" else "vit_b16_ep50"
        if protocol == "fs":
            return "vit_b16_ep50" if shots == 1 else "vit_b16_ep100" if shots <= 4 else "vit_b16"
        return super().config_stem(protocol, stem, demo, shots)


register(CoOp())
