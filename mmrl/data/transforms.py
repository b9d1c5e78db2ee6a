"""Image transforms of the protocol (docs/protocol.md#data-pipeline), built from INPUT.* like Dassl.

The build order is fixed whatever the order of INPUT.TRANSFORMS: (resize unless a random
crop is requested) -> random resized crop / random crop -> flip -> ToTensor -> Normalize.
The Dassl log lines are emitted so log.txt reads like the reference's.
"""
from __future__ import annotations

import logging

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from mmrl.config import TRANSFORM_NAMES as SUPPORTED
from mmrl.errors import ConfigError

log = logging.getLogger("mmrl.data")

_INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
           "nearest": InterpolationMode.NEAREST}


def _choices(cfg) -> tuple[str, ...]:
    choices = tuple(cfg.INPUT.TRANSFORMS)
    unknown = [c for c in choices if c not in SUPPORTED]
    if unknown:
        raise ConfigError(f"INPUT.TRANSFORMS has unsupported {unknown}; supported: {', '.join(SUPPORTED)}.")
    return choices


def _interpolation(cfg) -> InterpolationMode:
    try:
        return _INTERP[cfg.INPUT.INTERPOLATION]
    except KeyError:
        raise ConfigError(f"INPUT.INTERPOLATION = {cfg.INPUT.INTERPOLATION!r}; expected one of "
                          f"{', '.join(_INTERP)}.") from None


def _size(cfg) -> tuple[int, int]:
    size = tuple(int(s) for s in cfg.INPUT.SIZE)
    if len(size) != 2:
        raise ConfigError(f"INPUT.SIZE = {cfg.INPUT.SIZE!r}; expected (height, width).")
    return size


def _tail(cfg, choices: tuple[str, ...]) -> list:
    out: list = [T.ToTensor()]
    log.info("+ to torch tensor of range [0, 1]")
    if "normalize" in choices:
        mean, std = list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD)
        log.info("+ normalization (mean=%s, std=%s)", mean, std)
        out.append(T.Normalize(mean=mean, std=std))
    return out


def build_train_transform(cfg) -> T.Compose:
    choices, size, interp = _choices(cfg), _size(cfg), _interpolation(cfg)
    log.info("Building transform_train")
    tfs: list = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        log.info("+ resize to %s", cfg.INPUT.SIZE)
        tfs.append(T.Resize(size, interpolation=interp))
    if "random_crop" in choices:
        pad = cfg.INPUT.CROP_PADDING
        log.info("+ random crop (padding = %s)", pad)
        tfs.append(T.RandomCrop(size, padding=pad))
    if "random_resized_crop" in choices:
        scale = cfg.INPUT.RRCROP_SCALE
        log.info("+ random resized crop (size=%s, scale=%s)", cfg.INPUT.SIZE, scale)
        tfs.append(T.RandomResizedCrop(size, scale=tuple(float(s) for s in scale), interpolation=interp))
    if "random_flip" in choices:
        log.info("+ random flip")
        tfs.append(T.RandomHorizontalFlip())
    return T.Compose(tfs + _tail(cfg, choices))


def build_test_transform(cfg) -> T.Compose:
    choices, size, interp = _choices(cfg), _size(cfg), _interpolation(cfg)
    log.info("Building transform_test")
    log.info("+ resize the smaller edge to %d", max(size))
    log.info("+ %dx%d center crop", size[0], size[1])
    tfs: list = [T.Resize(max(size), interpolation=interp), T.CenterCrop(size)]
    return T.Compose(tfs + _tail(cfg, choices))
