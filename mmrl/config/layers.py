"""Resolving a run's config as train.py does: the layers applied in order, each key remembering
the layer that last set it (docs/protocol.md#one-run)."""
from __future__ import annotations

import ast
import difflib
import os
from dataclasses import dataclass, field
from typing import Any

from yacs.config import CfgNode as CN

from mmrl.config.defaults import TASKS, get_default_config
from mmrl.config.files import config_path, configs_dir, load_overrides, read_yaml_mapping
from mmrl.config.validate import validate
from mmrl.config.views import _flatten_plain, flatten
from mmrl.errors import ConfigError
from mmrl.trainers import registry

def _decode(value: Any) -> Any:
    """Decode a YAML/CLI string the way yacs does: a Python literal when possible."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _coerce(key: str, old: Any, new: Any, where: str) -> Any:
    """Keep the type of the existing key (yacs rule), with a clear error otherwise."""
    new = _decode(new)
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        if isinstance(new, bool):
            return new
    elif isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        return float(new)
    elif isinstance(old, (tuple, list)) and isinstance(new, (tuple, list)):
        return type(old)(new)
    elif isinstance(old, str) and isinstance(new, str):
        return new
    elif type(old) is type(new):
        return new
    raise ConfigError(
        f"{where}: {key} must be of type {type(old).__name__} (like its default {old!r}), "
        f"got {new!r} ({type(new).__name__})")


def _check_file_kind(p, layer_kind: str, flat: dict[str, Any]) -> None:
    """A dataset YAML names a dataset and a trainer YAML sets more than that: a file passed to the
    other flag (or an empty one) is named instead of running on defaults."""
    flag = "--dataset-config-file" if layer_kind == "dataset" else "--config-file"
    if not flat:
        raise ConfigError(f"{flag} {p} holds no config keys (an empty file?); pass a "
                          f"{'configs/datasets/<stem>.yaml' if layer_kind == 'dataset' else 'trainer'} YAML.")
    if layer_kind == "dataset" and "DATASET.NAME" not in flat:
        raise ConfigError(f"--dataset-config-file {p} sets no DATASET.NAME, so it is not a dataset YAML (a trainer "
                          f"YAML belongs to --config-file); pass one of configs/datasets/<stem>.yaml.")
    if layer_kind == "trainer" and all(k.startswith("DATASET.") for k in flat):
        raise ConfigError(f"--config-file {p} sets only DATASET keys: it is a dataset YAML (it belongs to "
                          f"--dataset-config-file); pass a trainer YAML such as "
                          f"configs/trainers/<TRAINER>/vit_b16.yaml.")


def _check_config_folder(config_file: str, trainer: str) -> None:
    """A shipped trainer YAML lives in its method's folder (configs/trainers/<folder>/): one from
    another method's folder would run this method on that method's recipe. A method that trains
    nothing reads only the input settings, from any method's file (CoOp's zero-shot runs do)."""
    folder = config_path(config_file).resolve().parent
    method = registry.get(trainer)
    if folder.parent.name != "trainers" or not method.trains:
        return
    owners = [m.name for m in registry.methods() if folder.name in (m.config_dir, m.config_folder())]
    if owners and folder.name not in (method.config_dir, method.config_folder()):
        raise ConfigError(f"--config-file {config_file} is a config of {owners[0]} (configs/trainers/{folder.name}/), "
                          f"but this run is --trainer {trainer}; pass one of "
                          f"configs/trainers/{method.config_folder()}/*.yaml or the matching --trainer.")


@dataclass
class ResolvedConfig:
    cfg: CN
    provenance: dict[str, str] = field(default_factory=dict)

    def explain_rows(self) -> list[tuple[str, Any, str]]:
        flat = flatten(self.cfg)
        return [(k, flat[k], self.provenance.get(k, "default")) for k in sorted(flat)]


class ConfigBuilder:
    """Applies layers to a config while recording which layer set each key."""

    def __init__(self, trainer: str = "") -> None:
        self.cfg = get_default_config(trainer)
        self.provenance: dict[str, str] = {k: "default" for k in flatten(self.cfg)}
        self._known = set(self.provenance)

    def _check_key(self, key: str, where: str) -> None:
        if key in self._known:
            return
        close = difflib.get_close_matches(key.upper(), sorted(self._known), n=1, cutoff=0.6)  # keys are upper case
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{where}: unknown config key {key!r}.{hint}")

    def set(self, key: str, value: Any, layer: str) -> None:
        self._check_key(key, layer)
        node = self.cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = _coerce(key, node[parts[-1]], value, layer)
        self.provenance[key] = layer

    def merge_flat(self, flat: dict[str, Any], layer: str) -> None:
        for k, v in flat.items():
            self.set(k, v, layer)

    def merge_yaml(self, path: str | os.PathLike, layer_kind: str) -> None:
        p = config_path(path)
        if not p.is_file():
            raise ConfigError(f"{layer_kind} config file not found: {p}. Pass an existing YAML "
                              f"(a relative configs/... path also looks in {configs_dir()}).")
        flat = _flatten_plain(read_yaml_mapping(p))
        _check_file_kind(p, layer_kind, flat)
        self.merge_flat(flat, f"{layer_kind}:{p}")

    def merge_opts(self, opts: list[str]) -> None:
        if len(opts) % 2:
            raise ConfigError(f"command-line opts must be KEY VALUE pairs; got an odd list: {opts}")
        for k, v in zip(opts[0::2], opts[1::2]):
            self.set(k, v, "cli opts")

    def get(self, key: str) -> Any:
        node = self.cfg
        for p in key.split("."):
            node = node[p]
        return node


@dataclass
class RunArgs:
    """The named options of train.py (Dassl's flags)."""
    root: str = ""
    output_dir: str = ""
    resume: str = ""
    seed: int | None = None
    trainer: str = ""
    dataset_config_file: str = ""
    config_file: str = ""
    eval_only: bool = False
    model_dir: str = ""
    load_epoch: int | None = None
    train_epoch: int | None = None
    no_train: bool = False
    allow_unfinished: bool = False
    source_domains: list[str] | None = None
    target_domains: list[str] | None = None
    transforms: list[str] | None = None
    backbone: str = ""
    head: str = ""
    opts: list[str] = field(default_factory=list)


def _opts_value(opts: list[str], key: str) -> str | None:
    found = None
    for k, v in zip(opts[0::2], opts[1::2]):
        if k == key:
            found = v
    return found


def resolve_config(args: RunArgs) -> ResolvedConfig:
    if args.trainer:
        registry.get(args.trainer)  # known, else a ConfigError listing the registered ones
    b = ConfigBuilder(args.trainer)
    if args.dataset_config_file:
        b.merge_yaml(args.dataset_config_file, "dataset")
    if args.config_file:
        b.merge_yaml(args.config_file, "trainer")
        if args.trainer:
            _check_config_folder(args.config_file, args.trainer)

    trainer = args.trainer or b.get("TRAINER.NAME")
    if args.trainer:
        b.set("TRAINER.NAME", args.trainer, "cli --trainer")
    if trainer:
        registry.get(trainer)  # known, else a ConfigError listing the registered ones

    task = _opts_value(args.opts, "TASK") or b.get("TASK")
    if not task:
        raise ConfigError("TASK is not set: add `TASK B2N`, `TASK FS` or `TASK CD` after the named "
                          "options (as the authors' scripts do); it selects the per-dataset overrides "
                          "and which logits are scored.")
    if task not in TASKS:
        raise ConfigError(f"TASK {task!r} is not one of {', '.join(TASKS)}")

    dataset_name = _opts_value(args.opts, "DATASET.NAME") or b.get("DATASET.NAME")
    if trainer and dataset_name:
        entry, path = load_overrides(trainer, task, dataset_name)
        if entry:
            b.merge_flat(entry, f"override:{path.name}[{task}/{dataset_name}]")

    if args.train_epoch is not None:
        # Dassl drops a falsy --train-epoch; here 0 is applied and refused by validate()
        b.set("OPTIM.MAX_EPOCH", int(args.train_epoch), "cli --train-epoch")
    named = [
        ("DATASET.ROOT", args.root, "--root"),
        ("OUTPUT_DIR", args.output_dir, "--output-dir"),
        ("RESUME", args.resume, "--resume"),
        ("DATASET.SOURCE_DOMAINS", args.source_domains, "--source-domains"),
        ("DATASET.TARGET_DOMAINS", args.target_domains, "--target-domains"),
        ("INPUT.TRANSFORMS", args.transforms, "--transforms"),
        ("MODEL.BACKBONE.NAME", args.backbone, "--backbone"),
        ("MODEL.HEAD.NAME", args.head, "--head"),
    ]
    for key, value, flag in named:
        if value:  # unset ("" / None); args.parse_run_args refuses an explicitly empty value
            b.set(key, value, f"cli {flag}")
    if args.seed is not None:
        # Unlike Dassl (which drops a falsy --seed), --seed 0 really seeds with 0.
        b.set("SEED", int(args.seed), "cli --seed")

    b.merge_opts(list(args.opts))
    cfg = b.cfg
    trains = not args.eval_only and (not cfg.TRAINER.NAME or registry.get(cfg.TRAINER.NAME).trains)
    validate(cfg, trains=trains, provenance=b.provenance)
    cfg.freeze()
    return ResolvedConfig(cfg, b.provenance)
