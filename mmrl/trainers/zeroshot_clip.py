"""Zero-shot CLIP: the reference row of every table (evaluation only, the dataset's template)."""
from __future__ import annotations

from yacs.config import CfgNode as CN

from mmrl.models.prompts import Prompts
from mmrl.models.zeroshot import ZeroshotCLIP as ZeroshotModel
from mmrl.trainers.base import PRECISIONS, BuildContext, Method
from mmrl.trainers.registry import register


class ZeroshotCLIP(Method):
    name = "ZeroshotCLIP"
    display = "CLIP"
    published_key = "CLIP"
    color = "tab:gray"
    trains = False
    block_in_every_hash = True

    def config_block(self) -> CN:
        node = CN()
        node.PREC = "fp16"
        return node

    def enumerated_keys(self) -> dict[str, tuple]:
        return {"PREC": PRECISIONS}

    def config_stem(self, protocol: str, stem: str, demo: bool, shots: int = 16) -> str:
        return "demo" if demo else "vit_b16"

    def config_folder(self) -> str:
        # Like CoOp's zero-shot runs: the input size, statistics and batch size of MMRL's files.
        return "MMRL"

    def build(self, ctx: BuildContext, *, for_training: bool) -> ZeroshotModel:
        clip = ctx.backbone(ctx.cfg.MODEL.BACKBONE.NAME)
        return ZeroshotModel(clip, Prompts.build(ctx.classnames, ctx.template)).to(ctx.device)


register(ZeroshotCLIP())
