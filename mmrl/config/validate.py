"""Refusing, before anything loads, the values the harness would not honour."""
from __future__ import annotations

import os
from typing import Any

from yacs.config import CfgNode as CN

from mmrl.config.defaults import SUBSAMPLE_MODES, TASKS, TEST_PRECISIONS
from mmrl.config.views import flatten
from mmrl.errors import ConfigError
from mmrl.trainers import registry

# Enumerated keys: the values this harness implements. Dassl accepts more for some of them
# (other optimisers, schedulers, samplers, evaluators); running with one of those would
# silently use the protocol's choice instead, so they are refused before anything loads.
ENUMERATED = {
    "TASK": TASKS,
    "DATASET.SUBSAMPLE_CLASSES": SUBSAMPLE_MODES,
    "TEST.PREC": TEST_PRECISIONS,
    "INPUT.INTERPOLATION": ("bilinear", "bicubic", "nearest"),
    "DATALOADER.TRAIN_X.SAMPLER": ("RandomSampler",),
    "DATALOADER.TEST.SAMPLER": ("SequentialSampler",),
    "TEST.EVALUATOR": ("Classification",),
    "TEST.SPLIT": ("test",),
    "TEST.FINAL_MODEL": ("last_step",),
    "TRAIN.COUNT_ITER": ("train_x",),
}
# Only a training run builds an optimiser and a schedule (Dassl's defaults, "adam" and
# "single_step", stay legal for evaluation-only configs).
ENUMERATED_TRAINING = {
    "OPTIM.NAME": ("adamw", "sgd"),
    "OPTIM.LR_SCHEDULER": ("cosine",),
}
TRANSFORM_NAMES = ("random_resized_crop", "random_crop", "random_flip", "center_crop", "normalize")


def _check_choice(key: str, value: Any, allowed: tuple, provenance: dict[str, str], why: str = "") -> None:
    if value in allowed:
        return
    where = provenance.get(key, "default")
    raise ConfigError(f"{key} = {value!r} (set by {where}) is not supported{why}; allowed: "
                      f"{', '.join(repr(a) for a in allowed)}.")


def _validated_methods(cfg: CN) -> list:
    """The running method, and the methods whose blocks every config hashes (their blocks are
    always their own)."""
    running = cfg.TRAINER.NAME if cfg.TRAINER.NAME in registry.names() else ""
    return [m for m in registry.methods() if m.name == running or m.block_in_every_hash]


def validate(cfg: CN, *, trains: bool = True, provenance: dict[str, str] | None = None) -> None:
    """Refuse values the harness would not honour, before any data or model is loaded."""
    prov = provenance or {}
    flat = flatten(cfg)
    for key, allowed in ENUMERATED.items():
        _check_choice(key, flat[key], allowed, prov)
    for m in _validated_methods(cfg):
        for key, allowed in m.enumerated_keys().items():
            full = f"TRAINER.{m.block_key}.{key}"
            _check_choice(full, flat[full], allowed, prov)
        m.validate(cfg.TRAINER)
    if trains:
        for key, allowed in ENUMERATED_TRAINING.items():
            _check_choice(key, flat[key], allowed, prov, " by the MMRL protocol's training loop")
        if cfg.OPTIM.WARMUP_EPOCH > 0:
            _check_choice("OPTIM.WARMUP_TYPE", cfg.OPTIM.WARMUP_TYPE, ("constant",), prov,
                          " by the MMRL protocol's warm-up")
    for key, flag in (("MODEL.HEAD.NAME", "--head"), ("DATASET.SOURCE_DOMAINS", "--source-domains"),
                      ("DATASET.TARGET_DOMAINS", "--target-domains")):
        if flat[key]:  # Dassl's domain-generalisation and head options: no MMRL dataset or model reads them
            raise ConfigError(f"{key} = {flat[key]!r} (set by {prov.get(key, 'default')}) is not used by MMRL or "
                              f"its datasets and would be ignored; leave {flag} / {key} unset.")
    if cfg.RESUME and os.path.realpath(os.path.expanduser(cfg.RESUME)) != \
            os.path.realpath(os.path.expanduser(cfg.OUTPUT_DIR)):
        raise ConfigError(f"RESUME = {cfg.RESUME!r} (set by {prov.get('RESUME', 'default')}): a run resumes from its "
                          f"own --output-dir by itself; to continue the run in {cfg.RESUME}, pass it as --output-dir.")
    unknown = [t for t in cfg.INPUT.TRANSFORMS if t not in TRANSFORM_NAMES]
    if unknown:
        raise ConfigError(f"INPUT.TRANSFORMS has unsupported {unknown} (set by "
                          f"{prov.get('INPUT.TRANSFORMS', 'default')}); supported: {', '.join(TRANSFORM_NAMES)}.")
    if cfg.DATALOADER.TRAIN_X.BATCH_SIZE < 1 or cfg.DATALOADER.TEST.BATCH_SIZE < 1:
        raise ConfigError("DATALOADER.TRAIN_X.BATCH_SIZE and DATALOADER.TEST.BATCH_SIZE must be >= 1")
    if cfg.OPTIM.MAX_EPOCH < 1:
        raise ConfigError(f"OPTIM.MAX_EPOCH must be >= 1; got {cfg.OPTIM.MAX_EPOCH} "
                          f"(set by {prov.get('OPTIM.MAX_EPOCH', 'default')})")
    size = tuple(cfg.INPUT.SIZE)
    if len(size) != 2 or size[0] != size[1]:
        raise ConfigError(f"INPUT.SIZE must be a square (H, W) pair; got {size}")
