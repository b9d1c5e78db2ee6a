"""Learning-rate schedule of the protocol (docs/protocol.md#optimiser-and-schedule), as a formula.

Cosine annealing over MAX_EPOCH (eta_min 0) wrapped in a constant warm-up of WARMUP_EPOCH
epochs at WARMUP_CONS_LR.  The wrapper does not advance the cosine during warm-up, so with
one warm-up epoch lr(e) = 0.5 * LR * (1 + cos(pi * (e - 2) / T)) for e >= 2: the cosine never
reaches its end (final lr 9.5492e-5 for T = 10).  It steps once per epoch, after the
optimiser step of the epoch's last batch.
"""
from __future__ import annotations

import math

import torch

from mmrl.errors import ConfigError


class ProtocolLR:
    def __init__(self, optimizer, base_lr: float, max_epoch: int, warmup_epoch: int = 0,
                 warmup_lr: float = 1e-5, warmup_type: str = "constant", scheduler: str = "cosine"):
        if scheduler != "cosine":
            raise ConfigError(f"OPTIM.LR_SCHEDULER {scheduler!r}: only 'cosine' (the MMRL protocol) is implemented")
        if warmup_epoch > 0 and warmup_type != "constant":
            raise ConfigError(f"OPTIM.WARMUP_TYPE {warmup_type!r}: only 'constant' (the MMRL protocol) is implemented")
        self.optimizer = optimizer
        self.base_lr, self.max_epoch = base_lr, max_epoch
        self.warmup_epoch, self.warmup_lr = max(warmup_epoch, 0), warmup_lr
        self.steps = 0  # number of step() calls so far (= completed epochs)
        self._apply()

    def lr_at(self, steps: int) -> float:
        """The lr after `steps` scheduler steps (lr of 1-based epoch steps + 1)."""
        if steps < self.warmup_epoch:
            return self.warmup_lr
        cos_steps = steps - self.warmup_epoch
        return 0.5 * self.base_lr * (1 + math.cos(math.pi * cos_steps / self.max_epoch))

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.steps)

    def step(self) -> None:
        self.steps += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"steps": self.steps, "base_lr": self.base_lr, "max_epoch": self.max_epoch,
                "warmup_epoch": self.warmup_epoch, "warmup_lr": self.warmup_lr}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self._apply()


def build_sgd(params, device: torch.device, optim) -> torch.optim.SGD:
    """Dassl's SGD (the prompt-learning baselines' optimiser): one group, OPTIM's momentum, dampening,
    Nesterov flag and weight decay; on CUDA the fused kernel (as build_adamw)."""
    return torch.optim.SGD(params, lr=optim.LR, momentum=optim.MOMENTUM, dampening=optim.SGD_DAMPNING,
                           nesterov=optim.SGD_NESTEROV, weight_decay=optim.WEIGHT_DECAY, fused=device.type == "cuda")


def build_protocol_optimizer(params, optim, device) -> tuple[torch.optim.Optimizer, ProtocolLR]:
    """The protocol's optimiser (OPTIM.NAME: AdamW or SGD) and schedule from an OPTIM config
    node (docs/protocol.md#optimiser-and-schedule)."""
    from mmrl.engine.train_step import build_adamw
    if optim.NAME == "adamw":
        optimizer = build_adamw(params, device, lr=optim.LR, weight_decay=optim.WEIGHT_DECAY,
                                betas=(optim.ADAM_BETA1, optim.ADAM_BETA2))
    elif optim.NAME == "sgd":
        optimizer = build_sgd(params, device, optim)
    else:
        raise ConfigError(f"OPTIM.NAME {optim.NAME!r}: the harness trains with 'adamw' or 'sgd'")
    scheduler = ProtocolLR(optimizer, optim.LR, optim.MAX_EPOCH, optim.WARMUP_EPOCH, optim.WARMUP_CONS_LR,
                           optim.WARMUP_TYPE, optim.LR_SCHEDULER)
    return optimizer, scheduler
