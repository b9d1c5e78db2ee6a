"""KgCoOp, knowledge-guided context optimisation (baselines.md §4): CoOp pulled towards the
hand-crafted prompt's text features."""
from __future__ import annotations

from mmrl.trainers.coop import PromptMethod
from mmrl.trainers.registry import register


class KgCoOp(PromptMethod):
    name = "KgCoOp"
    color = "tab:cyan"
    configs = {"b2n": "vit_b16_ep100_ctxv1", "cd": None, "dg": None, "fs": None}

    def sweep_pins(self, protocol: str, role: str, stem: str) -> list[str]:
        # what its base2new scripts pass (`base2new_train.sh DATASET 8.0`)
        if protocol != "b2n":
            return []
        return ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "8.0",
                "TRAINER.COOP.CLASS_TOKEN_POSITION", "end"]


register(KgCoOp())
