"""Configuration: Dassl key names plus each method's block (TRAINER.<NAME>), layered with provenance.

Layers, later wins (docs/protocol.md#one-run): defaults < dataset YAML < trainer YAML < per-dataset
overrides file < CLI named options < CLI ``KEY VALUE`` opts.  Every resolved key remembers
the layer that last set it, which ``mmrl explain`` prints.
"""
from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import importlib.resources
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from yacs.config import CfgNode as CN

from mmrl.errors import ConfigError

TASKS = ("B2N", "FS", "CD")
SUBSAMPLE_MODES = ("all", "base", "new")
PRECISIONS = ("fp16", "fp32", "amp", "bf16")
TEST_PRECISIONS = ("fp32", "amp", "bf16")

# Keys that say where things are or how chatty a run is, not what it computes: left out of
# the config hash so that moving the data root or the output tree keeps runs "complete".
NON_IDENTITY_KEYS = (
    "OUTPUT_DIR", "RESUME", "DATASET.ROOT", "DATASET.FEWSHOT_DIR", "DATALOADER.NUM_WORKERS",
    "VERBOSE", "TRAIN.PRINT_FREQ", "MODEL.BACKBONE.CACHE_DIR", "USE_CUDA", "TEST.SAVE_LOGITS",
    "TEST.CACHE_DIR", "TRAIN.CUDA_GRAPH",
)


# The YAML files ship inside the package (mmrl/configs, package data), so an installed package
# resolves them from any working directory; the repository's top-level configs/ links there.
CONFIGS_PREFIX = "configs"


def packaged_configs() -> Path:
    root = importlib.resources.files("mmrl") / CONFIGS_PREFIX
    if not isinstance(root, Path) or not root.is_dir():
        raise ConfigError(f"the mmrl package has no configs folder on disk ({root}); reinstall it "
                          f"from a wheel or a checkout (zipped installs are not supported)")
    return root


def configs_dir() -> Path:
    """The config tree in use: $MMRL_CONFIGS (a copy the user edits) or the packaged one."""
    env = os.environ.get("MMRL_CONFIGS")
    return Path(env) if env else packaged_configs()


def config_path(path: str | os.PathLike) -> Path:
    """A --config-file / --dataset-config-file path.  A relative ``configs/...`` path that does not
    exist from the working directory (an installed package run elsewhere) means that file of
    configs_dir()."""
    p = Path(path)
    if p.is_file() or p.is_absolute() or not p.parts or p.parts[0] != CONFIGS_PREFIX:
        return p
    shipped = configs_dir().joinpath(*p.parts[1:])
    return shipped if shipped.is_file() else p


def get_default_config(trainer: str = "") -> CN:
    """Dassl's defaults (the keys the protocol and the authors' YAMLs use) + our keys and the methods'
    blocks; a block several methods read has the defaults of ``trainer`` when it is one of them."""
    c = CN()
    c.VERSION = 1
    c.OUTPUT_DIR = "./output"
    c.RESUME = ""
    c.SEED = -1
    c.USE_CUDA = True
    c.VERBOSE = True
    c.TASK = ""

    c.INPUT = CN()
    c.INPUT.SIZE = (224, 224)
    c.INPUT.INTERPOLATION = "bilinear"
    c.INPUT.TRANSFORMS = ()
    c.INPUT.NO_TRANSFORM = False
    c.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
    c.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
    c.INPUT.CROP_PADDING = 4
    c.INPUT.RRCROP_SCALE = (0.08, 1.0)
    c.INPUT.CUTOUT_N = 1
    c.INPUT.CUTOUT_LEN = 16
    c.INPUT.GN_MEAN = 0.0
    c.INPUT.GN_STD = 0.15
    c.INPUT.RANDAUGMENT_N = 2
    c.INPUT.RANDAUGMENT_M = 10
    c.INPUT.COLORJITTER_B = 0.4
    c.INPUT.COLORJITTER_C = 0.4
    c.INPUT.COLORJITTER_S = 0.4
    c.INPUT.COLORJITTER_H = 0.1
    c.INPUT.RGS_P = 0.2
    c.INPUT.GB_P = 0.5
    c.INPUT.GB_K = 21

    c.DATASET = CN()
    c.DATASET.ROOT = ""
    c.DATASET.NAME = ""
    c.DATASET.SOURCE_DOMAINS = ()
    c.DATASET.TARGET_DOMAINS = ()
    c.DATASET.NUM_LABELED = -1
    c.DATASET.NUM_SHOTS = -1
    c.DATASET.VAL_PERCENT = 0.1
    c.DATASET.STL10_FOLD = -1
    c.DATASET.CIFAR_C_TYPE = ""
    c.DATASET.CIFAR_C_LEVEL = 1
    c.DATASET.ALL_AS_UNLABELED = False
    c.DATASET.SUBSAMPLE_CLASSES = "all"
    # Ours: where few-shot subsets (JSON) live; "" = ~/.cache/mmrl/fewshot (outside the data root).
    c.DATASET.FEWSHOT_DIR = ""
    # Ours: skip unreadable images instead of failing the run (off = the run fails, naming the file).
    c.DATASET.SKIP_CORRUPT = False

    c.DATALOADER = CN()
    c.DATALOADER.NUM_WORKERS = 4
    c.DATALOADER.K_TRANSFORMS = 1
    c.DATALOADER.RETURN_IMG0 = False
    c.DATALOADER.TRAIN_X = CN()
    c.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
    c.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    c.DATALOADER.TRAIN_X.N_DOMAIN = 0
    c.DATALOADER.TRAIN_X.N_INS = 16
    c.DATALOADER.TRAIN_U = CN()
    c.DATALOADER.TRAIN_U.SAME_AS_X = True
    c.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
    c.DATALOADER.TRAIN_U.BATCH_SIZE = 32
    c.DATALOADER.TRAIN_U.N_DOMAIN = 0
    c.DATALOADER.TRAIN_U.N_INS = 16
    c.DATALOADER.TEST = CN()
    c.DATALOADER.TEST.SAMPLER = "SequentialSampler"
    c.DATALOADER.TEST.BATCH_SIZE = 32

    c.MODEL = CN()
    c.MODEL.INIT_WEIGHTS = ""
    c.MODEL.BACKBONE = CN()
    c.MODEL.BACKBONE.NAME = ""
    c.MODEL.BACKBONE.PRETRAINED = True
    # Ours: an explicit CLIP weights file (taken as given, its SHA256 recorded).
    c.MODEL.BACKBONE.WEIGHTS = ""
    # Ours: where OpenAI CLIP files are cached ("" = $MMRL_CLIP_CACHE or ~/.cache/clip).
    c.MODEL.BACKBONE.CACHE_DIR = ""
    c.MODEL.HEAD = CN()
    c.MODEL.HEAD.NAME = ""
    c.MODEL.HEAD.HIDDEN_LAYERS = ()
    c.MODEL.HEAD.ACTIVATION = "relu"
    c.MODEL.HEAD.BN = True
    c.MODEL.HEAD.DROPOUT = 0.0

    c.OPTIM = CN()
    c.OPTIM.NAME = "adam"
    c.OPTIM.LR = 0.0003
    c.OPTIM.WEIGHT_DECAY = 5e-4
    c.OPTIM.MOMENTUM = 0.9
    c.OPTIM.SGD_DAMPNING = 0
    c.OPTIM.SGD_NESTEROV = False
    c.OPTIM.RMSPROP_ALPHA = 0.99
    c.OPTIM.ADAM_BETA1 = 0.9
    c.OPTIM.ADAM_BETA2 = 0.999
    c.OPTIM.STAGED_LR = False
    c.OPTIM.NEW_LAYERS = ()
    c.OPTIM.BASE_LR_MULT = 0.1
    c.OPTIM.LR_SCHEDULER = "single_step"
    c.OPTIM.STEPSIZE = (-1,)
    c.OPTIM.GAMMA = 0.1
    c.OPTIM.MAX_EPOCH = 10
    c.OPTIM.WARMUP_EPOCH = -1
    c.OPTIM.WARMUP_TYPE = "linear"
    c.OPTIM.WARMUP_CONS_LR = 1e-5
    c.OPTIM.WARMUP_MIN_LR = 1e-5
    c.OPTIM.WARMUP_RECOUNT = True

    c.TRAIN = CN()
    c.TRAIN.CHECKPOINT_FREQ = 0
    c.TRAIN.PRINT_FREQ = 10
    c.TRAIN.COUNT_ITER = "train_x"
    # Ours: on CUDA, replay each training step from a CUDA graph (the same kernels: speed only).
    c.TRAIN.CUDA_GRAPH = True

    c.TEST = CN()
    c.TEST.EVALUATOR = "Classification"
    c.TEST.PER_CLASS_RESULT = False
    c.TEST.COMPUTE_CMAT = False
    c.TEST.NO_TEST = False
    c.TEST.SPLIT = "test"
    c.TEST.FINAL_MODEL = "last_step"
    # Ours: also store the scored logits in predictions.npz.
    c.TEST.SAVE_LOGITS = False
    # Ours: uint8 cache of decoded test images ("" = ~/.cache/mmrl/testcache, "none" = off).
    c.TEST.CACHE_DIR = ""
    # Ours: evaluation arithmetic. The authors evaluate the fp32 model without autocast, also
    # after amp training; "amp" / "bf16" evaluate under that autocast (CUDA; bf16 also on CPU).
    c.TEST.PREC = "fp32"

    c.TRAINER = CN()
    c.TRAINER.NAME = ""
    for m in _methods():
        for key, block in m.config_blocks().items():
            if key not in c.TRAINER:
                c.TRAINER[key] = block
    if trainer:
        for key, block in _method(trainer).config_blocks().items():
            c.TRAINER[key] = block
    return c


def _methods():
    from mmrl.trainers import registry  # the methods import this module's constants
    return registry.methods()


def _method(name: str):
    from mmrl.trainers import registry
    return registry.get(name)


# ---------------------------------------------------------------------------------------------
# Flat views and provenance

def flatten(node: CN, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in sorted(node.keys()):
        v = node[k]
        key = f"{prefix}{k}"
        if isinstance(v, CN):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _flatten_plain(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten_plain(v, key + "."))
        else:
            out[key] = v
    return out


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
        close = difflib.get_close_matches(key, sorted(self._known), n=1, cutoff=0.6)
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
        self.merge_flat(_flatten_plain(read_yaml_mapping(p)), f"{layer_kind}:{p}")

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


# ---------------------------------------------------------------------------------------------
# Per-dataset overrides (mmrl/configs/overrides/<TRAINER>.yaml)

def read_yaml_mapping(p: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; ConfigError naming the file otherwise."""
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: not a readable YAML file ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys at the top level")
    return data


def load_overrides(trainer: str, task: str, dataset_name: str) -> tuple[dict[str, Any], Path | None]:
    """The override keys for (trainer, task, dataset) from overrides/<TRAINER>.yaml ({} when that
    file has no entry for them).  A missing file is an error: the run would silently lose them."""
    if not _method(trainer).has_overrides:
        return {}, None
    path = configs_dir() / "overrides" / f"{trainer}.yaml"
    if not path.is_file():
        raise ConfigError(f"per-dataset overrides file not found: {path}. Without it {trainer} would run "
                          f"with the wrong per-dataset settings; reinstall the package, or if MMRL_CONFIGS points at "
                          f"a copy of the configs, copy overrides/{trainer}.yaml there too.")
    table = read_yaml_mapping(path).get(task) or {}
    entry = table.get(dataset_name) if isinstance(table, dict) else table
    entry = entry or {}
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: entry {task}/{dataset_name} must map config keys to values")
    return dict(entry), path


# ---------------------------------------------------------------------------------------------
# The full resolution, as train.py does it

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
        _method(args.trainer)  # known, else a ConfigError listing the registered ones
    b = ConfigBuilder(args.trainer)
    if args.dataset_config_file:
        b.merge_yaml(args.dataset_config_file, "dataset")
    if args.config_file:
        b.merge_yaml(args.config_file, "trainer")

    trainer = args.trainer or b.get("TRAINER.NAME")
    if args.trainer:
        b.set("TRAINER.NAME", args.trainer, "cli --trainer")
    if trainer:
        _method(trainer)  # known, else a ConfigError listing the registered ones

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
    trains = not args.eval_only and (not cfg.TRAINER.NAME or _method(cfg.TRAINER.NAME).trains)
    validate(cfg, trains=trains, provenance=b.provenance)
    cfg.freeze()
    return ResolvedConfig(cfg, b.provenance)


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
    "OPTIM.NAME": ("adamw",),
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
    running = cfg.TRAINER.NAME if cfg.TRAINER.NAME in _method_names() else ""
    return [m for m in _methods() if m.name == running or m.block_in_every_hash]


def _method_names() -> list[str]:
    from mmrl.trainers import registry
    return registry.names()


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


# ---------------------------------------------------------------------------------------------
# Identity

def config_to_dict(cfg: CN) -> dict[str, Any]:
    def conv(node):
        if isinstance(node, CN):
            return {k: conv(node[k]) for k in sorted(node.keys())}
        if isinstance(node, tuple):
            return [conv(x) for x in node]
        if isinstance(node, list):
            return [conv(x) for x in node]
        return node
    return conv(cfg)


def _other_blocks(flat: dict[str, Any]) -> set[str]:
    """The keys of other methods' blocks, which do not change what this run computes (the blocks
    of the methods flagged ``block_in_every_hash`` excepted: runs recorded before methods were
    plug-ins hashed them, and keep their hash)."""
    name = flat.get("TRAINER.NAME") or ""
    own = set(_method(name).config_blocks()) if name in _method_names() else {name}
    skip = {f"TRAINER.{key}." for m in _methods() if not m.block_in_every_hash
            for key in m.config_blocks() if key not in own}
    return {k for k in flat if any(k.startswith(p) for p in skip)}


def identity(flat: dict[str, Any]) -> dict[str, Any]:
    """The flat config keys the config hash covers."""
    drop = set(NON_IDENTITY_KEYS) | _other_blocks(flat)
    return {k: v for k, v in flat.items() if k not in drop}


def config_hash(cfg: CN, run: dict[str, Any] | None = None) -> str:
    """A short stable hash of what a run computes (not of where it reads and writes)."""
    flat = identity(flatten(cfg))
    flat = {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}
    payload = {"config": flat, "run": run or {}}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def changed_keys(recorded: dict[str, Any], cfg: CN | dict[str, Any], ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """(key, recorded value, value now) for each key the config hash covers that differs
    between a recorded config (``config_to_dict`` form) and ``cfg`` (a config or another record's)."""
    def norm(v: Any) -> str:
        return json.dumps(list(v) if isinstance(v, tuple) else v, sort_keys=True, default=str)
    old = identity(_flatten_plain(recorded))
    new = identity(flatten(cfg) if isinstance(cfg, CN) else _flatten_plain(cfg))
    keys = sorted((set(old) | set(new)) - set(ignore))
    missing = "<absent>"
    return [(k, old.get(k, missing), new.get(k, missing)) for k in keys
            if k not in old or k not in new or norm(old[k]) != norm(new[k])]


def dump_config_text(cfg: CN) -> str:
    """The sorted nested 'KEY: value' dump printed at the start of log.txt (Dassl style)."""
    lines: list[str] = []

    def rec(node: CN, indent: int) -> None:
        for k in sorted(node.keys()):
            v = node[k]
            if isinstance(v, CN):
                lines.append(" " * indent + f"{k}:")
                rec(v, indent + 2)
            else:
                lines.append(" " * indent + f"{k}: {v}")
    rec(cfg, 0)
    return "\n".join(lines)


def clone_unfrozen(cfg: CN) -> CN:
    c = copy.deepcopy(cfg)
    c.defrost()
    return c
