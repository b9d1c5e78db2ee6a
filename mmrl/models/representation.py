"""The trainable parts: representation space, per-layer aligners and the rep projection.

Parameter names equal the authors' state-dict keys (docs/method.md#the-authors-checkpoints) so their checkpoints load
by name: MMRL ``representation_learner.compound_rep_tokens``,
``representation_learner.compound_rep_tokens_r2{v,t}proj.<i>.{weight,bias}``,
``image_encoder.proj_rep``; MMRL++ ``representation_learner.srra_r2{v,t}proj.weight``,
``...srra.<i>.{A,B,bias}``, ``image_encoder.{A,B}``.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class LayerAligners(nn.ModuleList):
    """MMRL: one Linear d -> D per layer, all deep copies of one freshly initialised Linear."""

    @classmethod
    def build(cls, rep_dim: int, width: int, n_layers: int) -> "LayerAligners":
        proto = nn.Linear(rep_dim, width)
        return cls([copy.deepcopy(proto) for _ in range(n_layers)])

    def token_sets(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        return [lin(tokens) for lin in self]


class LowRankResidual(nn.Module):
    """Per-layer residual A @ B (A kaiming-uniform, B zeros) plus the layer's own bias."""

    def __init__(self, out_dim: int, in_dim: int, rank: int, bias: torch.Tensor):
        super().__init__()
        self.A = nn.Parameter(torch.empty(out_dim, rank))
        self.B = nn.Parameter(torch.zeros(rank, in_dim))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.bias = nn.Parameter(bias.detach().clone())


class SharedResidualAligner(nn.Module):
    """MMRL++ SRRA: T^l = R (W + A_l B_l)^T + b_l with one shared W per modality."""

    def __init__(self, rep_dim: int, width: int, n_layers: int, rank: int):
        super().__init__()
        proto = nn.Linear(rep_dim, width)
        self.weight = nn.Parameter(proto.weight.detach().clone())
        self.srra = nn.ModuleList(LowRankResidual(width, rep_dim, rank, proto.bias) for _ in range(n_layers))

    def token_sets(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        return [tokens @ (self.weight + r.A @ r.B).t() + r.bias for r in self.srra]


class RepresentationLearner(nn.Module):
    """The shared space R (K x d) and its aligners to both towers."""

    def __init__(self, n_tokens: int, rep_dim: int, v_width: int, t_width: int, n_layers: int,
                 variant: str = "MMRL", res_rank: int = 4):
        super().__init__()
        self.variant = variant
        self.compound_rep_tokens = nn.Parameter(torch.empty(n_tokens, rep_dim).normal_(std=0.02))
        if variant == "MMRL":
            self.compound_rep_tokens_r2vproj = LayerAligners.build(rep_dim, v_width, n_layers)
            self.compound_rep_tokens_r2tproj = LayerAligners.build(rep_dim, t_width, n_layers)
        else:
            self.srra_r2vproj = SharedResidualAligner(rep_dim, v_width, n_layers, res_rank)
            self.srra_r2tproj = SharedResidualAligner(rep_dim, t_width, n_layers, res_rank)

    def forward(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per REP_LAYERS layer: visual tokens (K x Dv) and text tokens (K x Dt)."""
        r = self.compound_rep_tokens
        if self.variant == "MMRL":
            return self.compound_rep_tokens_r2vproj.token_sets(r), self.compound_rep_tokens_r2tproj.token_sets(r)
        return self.srra_r2vproj.token_sets(r), self.srra_r2tproj.token_sets(r)


class RepProjection(nn.Module):
    """The projection of representation features (registered as ``image_encoder``).

    MMRL: a free Dv x D matrix, width^-0.5 * N(0, 1).  MMRL++: frozen ``proj`` + A @ B
    (A kaiming-uniform, B zeros), so it equals ``proj`` at initialisation.
    """

    def __init__(self, v_width: int, out_dim: int, variant: str = "MMRL", lora_rank: int = 64):
        super().__init__()
        self.variant = variant
        if variant == "MMRL":
            self.proj_rep = nn.Parameter(v_width ** -0.5 * torch.randn(v_width, out_dim))
        else:
            self.A = nn.Parameter(torch.empty(v_width, lora_rank))
            self.B = nn.Parameter(torch.zeros(lora_rank, out_dim))
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def matrix(self, frozen_proj: torch.Tensor) -> torch.Tensor:
        if self.variant == "MMRL":
            return self.proj_rep
        return frozen_proj + self.A @ self.B
