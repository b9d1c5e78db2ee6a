"""Which evaluations can share one pass over the test images: the one rule, for the engine and the sweep.

A test pass is fixed by four facts. Runs that agree on all four feed their models the same
input tensors in the same batches under the same arithmetic, so a shared pass gives each run
exactly the logits of its own pass:

- the test items: the images and their labels, in order (the dataset, its root, the base/new
  subsample);
- the test transform, batching and reading: the config keys in ``TRANSFORM_KEYS`` (with
  DATASET.SKIP_CORRUPT, which substitutes unreadable images where another run must fail);
- the arithmetic: TEST.PREC as resolved on the device, and the device;
- the backbone the models run on.

Within one pass, ``multi_eval.prefix_groups`` decides which models also share the layers below J.

The engine applies the rule to built runs (``run_key``: the items read, the precision in use,
the backbone loaded). The sweep has only each job's train.py arguments (``argv_key``). Every
fact above is a config value or follows from the config, a run's config is a function of its
arguments, and the arguments that name the run (``RUN_NAMING``: --seed, --output-dir,
--model-dir) change none of the facts (the seed picks few-shot training images and initial
weights, never the test split). So evaluations whose other arguments are equal agree on all
four facts. The sweep's key only decides which jobs go to one ``mmrl eval-many`` process; the
engine regroups them by ``run_key``, so a job key that groups too much costs a pass, never a
wrong number.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any, TypeVar

from mmrl.engine.args import parse_run_args
from mmrl.errors import MMRLError

TRANSFORM_KEYS = ("INPUT.SIZE", "INPUT.INTERPOLATION", "INPUT.TRANSFORMS", "INPUT.PIXEL_MEAN", "INPUT.PIXEL_STD",
                  "DATALOADER.TEST.BATCH_SIZE", "DATASET.SKIP_CORRUPT")
RUN_NAMING = ("seed", "output_dir", "model_dir")

T = TypeVar("T")


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def config_value(cfg, dotted: str) -> Any:
    """The value of config key ``dotted`` (e.g. "INPUT.SIZE"), lists as tuples so that it hashes."""
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return _frozen(node)


def run_key(trainer) -> tuple:
    """The four facts of a built run's test pass (an ``engine.trainer.Trainer`` after build_data/build_model)."""
    cfg, info = trainer.cfg, trainer.backbone_info
    return (tuple((it.impath, it.label) for it in trainer.data.test),
            tuple(config_value(cfg, k) for k in TRANSFORM_KEYS),
            trainer.precision["test_used"], str(trainer.device),
            info.name if info is not None else cfg.MODEL.BACKBONE.NAME)


@functools.lru_cache(maxsize=None)
def argv_key(argv: tuple[str, ...]) -> tuple | None:
    """What fixes an --eval-only run's test pass among its train.py arguments: all of them but
    ``RUN_NAMING`` (None: not an evaluation-only run, or arguments train.py would refuse)."""
    try:
        args = parse_run_args(list(argv))
    except (MMRLError, SystemExit):
        return None
    if not args.eval_only:
        return None
    return tuple((f.name, _frozen(getattr(args, f.name))) for f in fields(args) if f.name not in RUN_NAMING)


def can_share(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether the evaluations started with train.py arguments ``a`` and ``b`` share one test pass."""
    key = argv_key(tuple(a))
    return key is not None and key == argv_key(tuple(b))


def group(items: Iterable[T], key: Callable[[T], Any]) -> list[list[T]]:
    """``items`` grouped by equal ``key``, groups in order of first appearance, items in order."""
    groups: dict[Any, list[T]] = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    return list(groups.values())
