"""What a method (a ``--trainer``) declares, in one place; the engine, the sweep, the tables
and the plots ask this, never a method's name.

A method is one module under ``mmrl/trainers/`` (or a plug-in's, :mod:`mmrl.plugins`) with one
:class:`Method` subclass, registered in :mod:`mmrl.trainers.registry`; its YAML files live in
``configs/trainers/<config_dir>/`` (a plug-in's in the folder $MMRL_CONFIGS names).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from yacs.config import CfgNode as CN

from mmrl.errors import CheckpointError, ConfigError

log = logging.getLogger("mmrl.engine")

# The training arithmetics a method's PREC may name (its enumerated_keys).
PRECISIONS = ("fp16", "fp32", "amp", "bf16")

# Which config of a method a protocol runs (docs/protocol.md#configs-per-task).
PROTOCOL_CONFIGS = {"b2n": "vit_b16", "fs": "vit_b16_few_shot", "cd": "vit_b16_cross_datasets",
                    "dg": "vit_b16_cross_datasets"}


@dataclass
class BuildContext:
    """What building a model needs from the run: the config, the class list and its text
    template, the device, and the shared frozen backbone by name (already on the device)."""
    cfg: Any
    classnames: list[str]
    template: str
    device: torch.device
    backbone: Callable[[str], nn.Module]


@dataclass
class EvalCheckpoint:
    """A checkpoint read for evaluation: its tensors, its stored architecture ({} for an
    official file, whose shapes tell it), its epoch and where it came from. ``notes``: what
    the method wants the run's record to say about how it used the file."""
    path: str
    state_dict: dict[str, torch.Tensor]
    arch: dict[str, Any]
    epoch: int | None
    notes: dict[str, Any] = field(default_factory=dict)


def check_ours_is_of(ck: EvalCheckpoint, method: str) -> bool:
    """Whether ``ck`` is our file (its arch is stored); one that another method trained is refused
    (methods sharing a model folder also share the names of their learned tensors)."""
    if not ck.arch:
        return False
    trained = ck.arch.get("trainer")
    if trained != method:
        raise CheckpointError(f"{ck.path} holds a {trained} model but --trainer is {method}. Pass --trainer "
                              f"{trained}, or the --model-dir of a {method} training.")
    return True


def note_config_not_used(ck: EvalCheckpoint, stored: dict[str, Any], current: dict[str, Any]) -> None:
    """The model is built from the architecture the checkpoint was trained with (``stored``), never
    from the evaluation's config (``current``; e.g. a CD target's per-dataset overrides): where the
    two differ, say so in the log and in the run's record, which would otherwise show the config's."""
    diff = {k: {"config": v, "checkpoint": stored[k]} for k, v in current.items() if k in stored and stored[k] != v}
    if diff:
        log.warning("%s: the model is built as the checkpoint was trained, not as the config says: %s", ck.path,
                    "; ".join(f"{k} {d['checkpoint']!r} (config: {d['config']!r})" for k, d in diff.items()))
        ck.notes["config_not_used"] = diff


def load_ours(model: nn.Module, ck: EvalCheckpoint, classes: int) -> None:
    """Load our file's tensors into ``model`` (built from its arch for ``classes`` classes), or a
    CheckpointError naming the tensor: a class-specific tensor only fits the class list it was trained on."""
    want = model.state_dict()
    for k, v in ck.state_dict.items():
        if k in want and tuple(v.shape) != tuple(want[k].shape):
            raise CheckpointError(f"{ck.path}: {k} has shape {tuple(v.shape)}, but the model for this run's "
                                  f"{classes} classes needs {tuple(want[k].shape)}. A class-specific tensor scores "
                                  f"only the classes it was trained on; evaluate it on those.")
    model.load_state_dict(ck.state_dict, strict=True)


class EpochHook:
    """Per-run training state a method keeps besides its parameters (e.g. PromptSRC's prompt
    aggregation): told the end of every epoch, asked for the final parameters, and saved
    in and restored from the resume file, so a killed run resumes to the same result."""

    def after_epoch(self, epoch: int, model: nn.Module) -> None:
        """``epoch`` (1-based) finished, after the optimiser and scheduler steps of its last batch."""

    def finish(self, model: nn.Module) -> None:
        """Training is over: put the final parameters into ``model`` (before the final
        checkpoint and test)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Method:
    name: str = ""               # --trainer / TRAINER.NAME
    display: str = ""            # the name in tables and plots
    published_key: str = ""      # its rows in mmrl/results/published/*.csv
    color: str = "tab:gray"      # its colour in plots
    model_folder: str = ""       # the model folder of a run directory (Dassl's registered model name)
    trains: bool = True          # False: evaluation only, one run per dataset (no randomness)
    has_overrides: bool = False  # reads configs/overrides/<name>.yaml (per-dataset settings)
    in_sweep_by_default: bool = False
    # The config each protocol runs (None: its official repositories ship none for it); unset:
    # the MMRL scheme of PROTOCOL_CONFIGS.
    configs: dict[str, str | None] | None = None
    # Blocks hashed into every run's config hash: the methods that existed when runs recorded
    # their whole config, so that their runs keep their hash as methods are added.
    block_in_every_hash: bool = False
    # Keys of its block that have no usable default: a run of it refuses them empty (its YAML sets them).
    required_keys: tuple[str, ...] = ()

    @property
    def block_key(self) -> str:
        """Its config block, TRAINER.<block_key> (the official configs' name for it)."""
        return self.name

    @property
    def config_dir(self) -> str:
        """Its folder under configs/trainers/."""
        return self.name

    # -- config -------------------------------------------------------------------------------
    def config_block(self) -> CN:
        """TRAINER.<block_key>: its keys with their defaults (the types are the defaults' types)."""
        return CN()

    def config_blocks(self) -> dict[str, CN]:
        """Every TRAINER.<KEY> block it reads (several methods may read one block, each with its
        own defaults: a run's config takes the running method's)."""
        return {self.block_key: self.config_block()}

    def validate(self, trainer_node: CN) -> None:
        """Refuse values of its blocks (``trainer_node`` is cfg.TRAINER) the method cannot honour
        (ConfigError naming the key)."""

    def precision(self, cfg) -> str:
        """The requested training arithmetic (PREC)."""
        return cfg.TRAINER[self.block_key].PREC

    def enumerated_keys(self) -> dict[str, tuple]:
        """Its keys with a closed set of values ('PREC' -> PRECISIONS ...), relative to its block."""
        return {}

    # -- protocol -----------------------------------------------------------------------------
    def config_stem(self, protocol: str, stem: str, demo: bool, shots: int = 16) -> str:
        """The trainer config a sweep runs for ``protocol`` on dataset ``stem`` with ``shots``."""
        if demo:
            return "demo"
        if self.configs is not None:
            return self._official_config(protocol)
        if stem == "imagenet" and protocol in ("b2n", "fs"):
            return "vit_b16_imagenet"
        return PROTOCOL_CONFIGS[protocol]

    def _official_config(self, protocol: str) -> str:
        cfg = (self.configs or {}).get(protocol)
        if cfg is None:
            have = ", ".join(k for k, v in (self.configs or {}).items() if v)
            raise ConfigError(f"{self.name} has no official config for protocol {protocol!r} (its official "
                              f"repositories run {have or 'none'}); leave {self.name} out of that sweep")
        return cfg

    def config_folder(self) -> str:
        """The folder under configs/trainers/ the sweep takes this method's config files from."""
        return self.config_dir

    def sweep_pins(self, protocol: str, role: str, stem: str) -> list[str]:
        """KEY VALUE options its official scripts pass on the command line for ``protocol`` on
        dataset ``stem`` (role "train" or "eval")."""
        return []

    # -- model --------------------------------------------------------------------------------
    def build(self, ctx: BuildContext, *, for_training: bool) -> nn.Module:
        """A fresh model for ``ctx`` (for training: initialised as the method's reference
        initialises it, so that a seed trains what it trains there)."""
        raise NotImplementedError

    def build_for_eval(self, ctx: BuildContext, ck: EvalCheckpoint) -> nn.Module:
        """A model with the checkpoint's architecture (never the current config's), its
        tensors loaded strictly."""
        raise CheckpointError(f"{self.name} does not load checkpoints")

    def head(self, cfg) -> str:
        """Which logits of ``forward_eval`` are scored."""
        return "class"

    def arch(self, model: nn.Module) -> dict[str, Any]:
        """What fixes the shapes of its checkpoint (stored with it)."""
        spec = getattr(model, "spec", None)
        if not callable(getattr(spec, "to_dict", None)):
            raise ConfigError(f"{self.name} ({type(self).__module__}): its model has no spec.to_dict(); define "
                              f"arch(model) returning what fixes its checkpoint's shapes (a dict build_for_eval reads)")
        return spec.to_dict()

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def epoch_hook(self, cfg, model: nn.Module) -> EpochHook | None:
        """Its per-run training state beyond the parameters, if it has any."""
        return None

