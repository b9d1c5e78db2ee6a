"""Evaluate several checkpoints of one backbone on one split in a single pass (docs/method.md#exact-shortcuts).

The three seeds of a cell see the same test images through the same frozen layers 1..J-1,
so each batch is loaded once and ``image_prefix`` runs once per group of models that share
the backbone object and J; every model then runs only its own layers J..L
(``forward_eval(images, prefix=...)``). Models that cannot share a prefix (another
backbone, another J, no ``image_prefix``) still share the data pass but compute their own
prefix. The logits equal separate passes exactly: the same operations on the same batch.

This is the only evaluation loop: a run's own test (``Trainer.test``) is this pass with one
model. Which runs may share a pass at all is ``engine/shared_pass.py``'s rule.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mmrl.engine import shared_pass
from mmrl.engine.precision import autocast_context, resolve_precision

log = logging.getLogger("mmrl.engine")


def prefix_groups(models: Sequence[nn.Module]) -> list[list[int]]:
    """Indices of models that can share layers below J: same backbone object and same J."""
    def key(i: int) -> tuple:
        m = models[i]
        clip, j = getattr(m, "clip", None), getattr(m, "J", None)
        if clip is None or j is None or not hasattr(m, "image_prefix"):
            return ("alone", i)
        return ("shared", id(clip), j)
    return shared_pass.group(range(len(models)), key)


def _heads(heads: str | Sequence[str], n: int) -> list[str]:
    if isinstance(heads, str):
        return [heads] * n
    if len(heads) != n:
        raise ValueError(f"{len(heads)} heads for {n} models")
    return list(heads)


@torch.no_grad()
def evaluate_together(models: Sequence[nn.Module], loader: Iterable[dict[str, Any]], heads: str | Sequence[str],
                      device: torch.device | str, precision: str = "fp32", *,
                      save_logits: bool = False) -> list[dict[str, Any]]:
    """One pass over ``loader`` for all ``models``; per model (in order) a dict with
    ``pred`` and ``label`` (int64 arrays), ``index`` (dataset indices), ``head`` and,
    with ``save_logits``, ``logits`` (float32, N x C) of the scored head."""
    if not models:
        return []
    device = torch.device(device)
    precision = resolve_precision(precision, device)  # amp/fp16 mean fp32 off CUDA, as in Trainer
    heads = _heads(heads, len(models))
    for m in models:
        m.eval()
    groups = prefix_groups(models)
    shared = [g for g in groups if len(g) > 1]
    if len(groups) > 1:
        log.info("Evaluating %d models in one pass; layers below J shared within %s, not across groups "
                 "(different backbone or REP_LAYERS[0])", len(models), groups)
    elif len(models) > 1:  # one model is a run's own test pass: its log stays the reference's
        log.info("Evaluating %d models in one pass, sharing data loading and layers below J", len(models))
    preds: list[list[torch.Tensor]] = [[] for _ in models]
    logits_all: list[list[torch.Tensor]] = [[] for _ in models]
    labels_all: list[torch.Tensor] = []
    index_all: list[torch.Tensor] = []
    for batch in loader:
        images = batch["img"].to(device, non_blocking=True)
        labels_all.append(torch.as_tensor(batch["label"]).cpu())
        index_all.append(torch.as_tensor(batch["index"]).cpu())
        with autocast_context(precision, device):
            for group in groups:
                prefix = models[group[0]].image_prefix(images) if group in shared else None
                for i in group:
                    logits = models[i].forward_eval(images, prefix=prefix)[heads[i]].float()
                    preds[i].append(logits.argmax(dim=1).cpu())
                    if save_logits:
                        logits_all[i].append(logits.cpu())
    label = torch.cat(labels_all).numpy().astype(np.int64)
    index = torch.cat(index_all).numpy().astype(np.int64)
    out = []
    for i in range(len(models)):
        res = {"pred": torch.cat(preds[i]).numpy().astype(np.int64), "label": label, "index": index,
               "head": heads[i]}
        if save_logits:
            res["logits"] = torch.cat(logits_all[i]).numpy().astype(np.float32)
        out.append(res)
    return out


def accuracy(result: dict[str, Any]) -> float:
    """Top-1 accuracy in percent of one ``evaluate_together`` result."""
    return 100.0 * float((result["pred"] == result["label"]).mean()) if len(result["label"]) else 0.0
