"""MMRL++ (docs/method.md#mmrl): MMRL with shared residual low-rank adaptation (the authors'
trainer name MMRLpp)."""
from __future__ import annotations

from mmrl.trainers.mmrl import MMRL
from mmrl.trainers.registry import register


class MMRLpp(MMRL):
    name = "MMRLpp"
    display = "MMRL++"
    published_key = "MMRL++"
    color = "tab:orange"
    block_extra = {"BETA": 0.9, "PROJ_LORA_DIM": 64, "RES_LORA_DIM": 4}

    def sweep_pins(self, protocol: str, role: str, stem: str) -> list[str]:
        return []  # its cross-dataset scripts pass neither of MMRL's pins


register(MMRLpp())
