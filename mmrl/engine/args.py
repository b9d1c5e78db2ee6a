"""train.py's command line: Dassl's flags, then a flat KEY VALUE list of config opts."""
from __future__ import annotations

import argparse

from mmrl.config import RunArgs
from mmrl.errors import ConfigError
from mmrl.trainers import registry

# Flags whose empty value Dassl would drop without a word: refused here instead.
_STRING_FLAGS = ("root", "output_dir", "resume", "config_file", "dataset_config_file", "trainer", "backbone",
                 "head", "model_dir")


def add_run_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--root", type=str, default=None,
                   help="path to the dataset root (DATASET.ROOT); without it the demo dataset is built-in")
    p.add_argument("--output-dir", type=str, default=None, help="run directory (OUTPUT_DIR)")
    p.add_argument("--resume", type=str, default=None,
                   help="Dassl flag: only the run's own --output-dir, which a run resumes from by itself")
    p.add_argument("--seed", type=int, default=None,
                   help="seed (>= 0 seeds Python, NumPy and torch; 0 is a real seed here)")
    p.add_argument("--source-domains", type=str, nargs="+", help="Dassl flag, refused (no dataset here reads it)")
    p.add_argument("--target-domains", type=str, nargs="+", help="Dassl flag, refused (no dataset here reads it)")
    p.add_argument("--transforms", type=str, nargs="+", help="INPUT.TRANSFORMS (the training augmentations)")
    p.add_argument("--config-file", type=str, default=None, help="trainer YAML")
    p.add_argument("--dataset-config-file", type=str, default=None, help="dataset YAML")
    p.add_argument("--trainer", type=str, default=None, help="the method: " + ", ".join(registry.names()))
    p.add_argument("--backbone", type=str, default=None, help="MODEL.BACKBONE.NAME")
    p.add_argument("--head", type=str, default=None, help="Dassl flag, refused (no model here reads it)")
    p.add_argument("--eval-only", action="store_true", help="evaluate only (needs --model-dir)")
    p.add_argument("--model-dir", type=str, default=None, help="run directory to load weights from")
    p.add_argument("--load-epoch", type=int, default=None, help="epoch of the checkpoint to load")
    p.add_argument("--train-epoch", type=int, default=None, help="OPTIM.MAX_EPOCH")
    p.add_argument("--no-train", action="store_true", help="build everything but do not train")
    p.add_argument("--allow-unfinished", action="store_true",
                   help="--eval-only: evaluate a --model-dir whose training is not complete (recorded)")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                   help="config overrides as KEY VALUE pairs, e.g. DATASET.NUM_SHOTS 16 TASK B2N")
    return p


def build_arg_parser(prog: str = "train.py") -> argparse.ArgumentParser:
    return add_run_arguments(argparse.ArgumentParser(prog=prog))


def namespace_to_run_args(ns: argparse.Namespace) -> RunArgs:
    for name in _STRING_FLAGS:
        value = getattr(ns, name)
        if value is not None and not value.strip():
            demo = " (without --root the built-in demo dataset is used)" if name == "root" else ""
            raise ConfigError(f"--{name.replace('_', '-')} was given an empty value; pass a value or leave the "
                              f"flag out{demo}.")
        setattr(ns, name, value or "")
    if ns.allow_unfinished and not ns.eval_only:
        raise ConfigError("--allow-unfinished only applies to --eval-only runs (evaluating an unfinished "
                          "--model-dir).")
    if ns.load_epoch is not None and not ns.eval_only:
        raise ConfigError(f"--load-epoch {ns.load_epoch} only applies to --eval-only runs (the checkpoint of "
                          f"--model-dir to evaluate); a training run resumes from its own --output-dir.")
    return RunArgs(
        root=ns.root, output_dir=ns.output_dir, resume=ns.resume, seed=ns.seed,
        trainer=ns.trainer, dataset_config_file=ns.dataset_config_file, config_file=ns.config_file,
        eval_only=ns.eval_only, model_dir=ns.model_dir, load_epoch=ns.load_epoch,
        train_epoch=ns.train_epoch, no_train=ns.no_train, allow_unfinished=ns.allow_unfinished,
        source_domains=ns.source_domains,
        target_domains=ns.target_domains, transforms=ns.transforms, backbone=ns.backbone,
        head=ns.head, opts=list(ns.opts or []),
    )


def parse_run_args(argv: list[str]) -> RunArgs:
    return namespace_to_run_args(build_arg_parser().parse_args(argv))
