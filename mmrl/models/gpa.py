"""PromptSRC's Gaussian-weighted prompt aggregation (spec baselines.md §7.5).

theta_final = sum_e g(e) * theta_e over the epochs e = 1..E, with g the normal density
N(e; GPA_MEAN, GPA_STD^2) normalised over 1..E in float64. As the reference does it: at the end
of every epoch (after the optimiser and scheduler steps) each tensor is multiplied by g(e) in
its own dtype and added to the running sum (running + new); after the last epoch the sum
replaces the model's tensors. The running sum is resume state: ``state_dict()`` after each
epoch, ``load_state_dict()`` on resume, and a resumed run ends with the same aggregate.
"""
from __future__ import annotations

import numpy as np
import torch

from mmrl.errors import CheckpointError, ConfigError


def gaussian_weights(mean: float, std: float, epochs: int) -> list[float]:
    """g(1..E): the normal density at each epoch, normalised to sum 1 (float64)."""
    if std <= 0 or epochs < 1:
        raise ConfigError(f"TRAINER.PROMPTSRC.GPA_STD must be positive and OPTIM.MAX_EPOCH at least 1, "
                          f"got GPA_STD {std} and MAX_EPOCH {epochs}")
    # the reference's expression and summation order, in numpy float64
    dens = [(1 / (std * np.sqrt(2 * np.pi))) * np.exp(-0.5 * ((e - mean) / std) ** 2) for e in range(1, epochs + 1)]
    total = sum(dens)
    if total == 0.0:
        raise ConfigError(f"TRAINER.PROMPTSRC.GPA_MEAN {mean} with GPA_STD {std} puts no weight on epochs "
                          f"1..{epochs}; choose a mean within or near that range")
    return [float(d / total) for d in dens]


class GaussianPromptAggregation:
    """Call ``add_epoch(e, model.state_dict())`` at the end of epoch e (1-based, in order);
    after epoch E, ``final_state()`` is what the model loads for the final test and checkpoint."""

    def __init__(self, mean: float, std: float, epochs: int):
        self.mean, self.std, self.epochs = float(mean), float(std), int(epochs)
        self.weights = gaussian_weights(self.mean, self.std, self.epochs)
        self.epochs_done = 0
        self._sum: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_cfg(cls, cfg) -> "GaussianPromptAggregation":
        blk = cfg.TRAINER.PROMPTSRC
        return cls(float(blk.GPA_MEAN), float(blk.GPA_STD), int(cfg.OPTIM.MAX_EPOCH))

    @property
    def complete(self) -> bool:
        return self.epochs_done == self.epochs

    def add_epoch(self, epoch: int, state: dict[str, torch.Tensor]) -> None:
        if epoch != self.epochs_done + 1 or epoch > self.epochs:
            raise RuntimeError(f"GPA: epoch {epoch} added after {self.epochs_done} of {self.epochs} epochs; "
                               f"epochs must be added once each, in order")
        w = self.weights[epoch - 1]  # a Python float: the product keeps each tensor's dtype
        weighted = {k: v.detach() * w for k, v in state.items()}
        if self._sum is None:
            self._sum = weighted
        else:
            if weighted.keys() != self._sum.keys():
                raise RuntimeError(f"GPA: epoch {epoch} has other tensors than the earlier epochs")
            self._sum = {k: self._sum[k] + weighted[k] for k in self._sum}
        self.epochs_done = epoch

    def final_state(self) -> dict[str, torch.Tensor]:
        if not self.complete or self._sum is None:
            raise RuntimeError(f"GPA: the aggregate needs all {self.epochs} epochs, {self.epochs_done} were added")
        return {k: v.clone() for k, v in self._sum.items()}

    def state_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "epochs": self.epochs, "epochs_done": self.epochs_done,
                "sum": None if self._sum is None else {k: v.detach().cpu().clone() for k, v in self._sum.items()}}

    def load_state_dict(self, state: dict, device: torch.device | str | None = None) -> None:
        settings = (state.get("mean"), state.get("std"), state.get("epochs"))
        if settings != (self.mean, self.std, self.epochs):
            raise CheckpointError(f"the resume state's GPA (mean, std, epochs) = {settings} differs from the "
                                  f"config's {(self.mean, self.std, self.epochs)}; resume with the config it was "
                                  f"started with, or start the run over in a new output directory")
        self.epochs_done = int(state["epochs_done"])
        s = state["sum"]
        self._sum = None if s is None else {k: v.to(device) if device is not None else v.clone() for k, v in s.items()}
