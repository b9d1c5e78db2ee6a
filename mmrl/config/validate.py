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


def _check_ranges(cfg: CN, trains: bool, prov: dict[str, str]) -> None:
    """Numbers outside the range the loop can use (torch or a modulo would fail mid-run)."""
    def refuse(key: str, value: Any, need: str) -> None:
        raise ConfigError(f"{key} = {value!r} (set by {prov.get(key, 'default')}) must be {need}.")
    if trains and not cfg.OPTIM.LR > 0:
        refuse("OPTIM.LR", cfg.OPTIM.LR, "> 0 for a training run")
    if cfg.DATALOADER.NUM_WORKERS < 0:
        refuse("DATALOADER.NUM_WORKERS", cfg.DATALOADER.NUM_WORKERS, ">= 0 (0 loads in the main process)")
    if cfg.TRAIN.PRINT_FREQ < 1:
        refuse("TRAIN.PRINT_FREQ", cfg.TRAIN.PRINT_FREQ, ">= 1 (batches between log lines)")
    for key in ("INPUT.PIXEL_MEAN", "INPUT.PIXEL_STD"):
        values = list(cfg.INPUT[key.split(".")[1]])
        if len(values) != 3:
            refuse(key, values, "three numbers, one per RGB channel")
    if min(cfg.INPUT.PIXEL_STD) <= 0:
        refuse("INPUT.PIXEL_STD", list(cfg.INPUT.PIXEL_STD), "positive (each channel is divided by it)")


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
        if m.name == cfg.TRAINER.NAME:
            for key in m.required_keys:
                full = f"TRAINER.{m.block_key}.{key}"
                if not flat[full]:
                    raise ConfigError(f"{full} is empty (set by {prov.get(full, 'default')}); {m.name} needs it. "
                                      f"Pass {m.name}'s trainer YAML as --config-file "
                                      f"(configs/trainers/{m.config_folder()}/*.yaml) or set {full}.")
    _check_ranges(cfg, trains, prov)
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
