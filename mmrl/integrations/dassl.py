"""Our methods as Dassl trainers, for CoOp-family repositories (CoOp, MaPLe, PromptSRC forks).

In the repository's ``train.py``, next to its own ``import trainers.coop`` lines (after them, so
that a name the repository registers itself stays its own)::

    import mmrl.integrations.dassl as mmrl_dassl   # registers our methods (mmrl.trainers)

    def extend_cfg(cfg):
        ...                                        # the repository's own keys
        mmrl_dassl.extend_cfg(cfg)                 # ours: the methods' TRAINER blocks, TASK, ...

then ``python train.py --trainer MMRL ... TASK B2N`` runs inside Dassl's loop with Dassl's data
manager, transforms and evaluator, and with our model (the fast path), our AdamW + protocol
schedule (Dassl's warm-up scheduler no longer constructs on current torch), our test-head rule
and our checkpoints in Dassl's layout (``<OUTPUT_DIR>/<the method's model folder>/
model.pth.tar-<E>`` + ``checkpoint``), which ``mmrl train --eval-only --model-dir`` also reads.
"""
from __future__ import annotations

import functools
import logging
import sys
import warnings

import torch

from mmrl.config import clone_unfrozen, flatten, get_default_config, load_overrides, validate
from mmrl.data.resources import DEFAULT_TEMPLATE, text_template
from mmrl.engine import checkpoint as ckpt
from mmrl.engine.precision import autocast_context, resolve_precision
from mmrl.engine.runlog import run_logging
from mmrl.engine.schedule import build_protocol_optimizer
from mmrl.engine.train_step import TrainStep
from mmrl.engine.trainer import check_loss, config_backbone, read_eval_checkpoint
from mmrl.errors import ConfigError
from mmrl.trainers import BuildContext, registry

_INSTALL = ("mmrl.integrations.dassl needs Dassl, which is not on PyPI: clone "
            "https://github.com/KaiyangZhou/Dassl.pytorch and run `pip install -e .` in the clone (or put the "
            "clone on PYTHONPATH), then `pip install 'mmrl[dassl]'` for the packages Dassl imports "
            "(tensorboard, wilds).")


def _install_message(err: ImportError) -> str:
    missing = (getattr(err, "name", None) or "").split(".")[0]
    if missing and missing != "dassl":
        return (f"Dassl is there but it imports {missing!r}, which is not installed: "
                f"`pip install 'mmrl[dassl]'` installs what Dassl imports ({err}).")
    found = sys.modules.get("dassl")
    if found is not None and "cannot import name" in str(err):  # a Dassl, but not the one we were built on
        return (f"the Dassl at {getattr(found, '__file__', '?')} (version {getattr(found, '__version__', '?')}) "
                f"is not the one mmrl.integrations.dassl works with (Dassl.pytorch 0.6.3): {err}. {_INSTALL}")
    return f"{_INSTALL} ({err})"


try:
    from dassl.engine import TRAINER_REGISTRY, TrainerX
    from dassl.metrics import compute_accuracy
except ImportError as _err:
    raise ImportError(_install_message(_err)) from _err


def extend_cfg(cfg, trainer: str = "") -> None:
    """Add our config keys with our defaults to a Dassl config: the methods' TRAINER blocks,
    TASK, DATASET.SUBSAMPLE_CLASSES and our MODEL / TEST / DATASET extras.
    Keys the config already has keep their value (the repository's own defaults win).
    ``trainer`` (the --trainer name): a block several methods read gets that method's keys and
    types (KgCoOp's TRAINER.COOP has W and a flag CTX_INIT, CoOp's a phrase)."""
    _add_missing(cfg, get_default_config(_our_method(trainer)))


def _our_method(name: str) -> str:
    """The method registered in Dassl as ``name`` by us, else ""."""
    if name not in TRAINER_REGISTRY.registered_names():
        return ""
    cls = TRAINER_REGISTRY.get(name)
    return cls.METHOD if issubclass(cls, _HarnessTrainer) else ""


def _add_missing(node, ours) -> None:
    for key in ours.keys():
        if key not in node:
            node[key] = clone_unfrozen(ours[key]) if hasattr(ours[key], "keys") else ours[key]
        elif hasattr(ours[key], "keys") and hasattr(node[key], "keys"):
            _add_missing(node[key], ours[key])


def protocol_overrides(trainer: str, task: str, dataset_name: str) -> list:
    """The per-dataset protocol settings (configs/overrides/<TRAINER>.yaml) as a KEY VALUE list for
    ``cfg.merge_from_list``, as the authors' ``get_dataset_specified_config``; [] when there are none."""
    entry, _ = load_overrides(trainer, task, dataset_name)
    return [x for key, value in entry.items() for x in (key, value)]


class _CurrentStdout:
    """sys.stdout at the moment of writing: Dassl's setup_logger swaps it for its log.txt tee."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _dassl_log(method):
    """Our library logs; Dassl's log.txt keeps stdout only. Route our lines there while ``method``
    runs (and lift the ``logging.disable(WARNING)`` that importing Dassl's WILDS datasets sets for
    the whole process)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        disabled = logging.root.manager.disable
        logging.disable(logging.NOTSET)
        try:
            with run_logging(None, stream=_CurrentStdout()):
                return method(self, *args, **kwargs)
        finally:
            logging.disable(disabled)
    return wrapper


class _HarnessTrainer(TrainerX):
    """One of our methods inside Dassl's TrainerX loop: config checks, the method's config view,
    our model, step, schedule, head rule and checkpoints. Subclassed per method (METHOD)."""

    METHOD = ""

    @property
    def method(self):
        return registry.get(self.METHOD)

    def check_cfg(self, cfg) -> None:
        ours = flatten(get_default_config(self.METHOD))
        theirs = flatten(cfg)
        block = f"TRAINER.{self.method.block_key}."
        missing = [k for k in ours if k not in theirs and (not k.startswith("TRAINER.") or k.startswith(block))]
        if missing:
            own = flatten(get_default_config()).keys() != ours.keys()  # a block of its own (KgCoOp's COOP)
            call = f"extend_cfg(cfg, {self.METHOD!r})" if own else "extend_cfg(cfg)"
            raise ConfigError(f"the Dassl config lacks {len(missing)} of our keys ({', '.join(missing[:4])}"
                              f"{', ...' if len(missing) > 4 else ''}): "
                              f"call mmrl.integrations.dassl.{call} in your train.py's extend_cfg "
                              f"(before the config files are merged).")
        if not cfg.TASK:
            raise ConfigError("TASK is not set: add `TASK B2N`, `TASK FS` or `TASK CD` after the named options "
                              "(it selects which logits are scored).")
        if cfg.TEST.FINAL_MODEL != "last_step":
            raise ConfigError(f"TEST.FINAL_MODEL {cfg.TEST.FINAL_MODEL!r}: the protocol deploys the last-epoch "
                              f"model; set TEST.FINAL_MODEL last_step.")
        validate(self._method_cfg(cfg))

    def _method_cfg(self, cfg):
        """The config as our code reads it: TRAINER.NAME is the method even when registered under another name."""
        if cfg.TRAINER.NAME == self.METHOD:
            return cfg
        view = clone_unfrozen(cfg)
        view.TRAINER.NAME = self.METHOD
        view.freeze()
        return view

    def _context(self) -> BuildContext:
        dataset = self.dm.dataset
        name = self.cfg.DATASET.NAME
        template = getattr(dataset, "template", None) or text_template(name)
        if isinstance(template, (list, tuple)):  # Tip-Adapter-style classes keep a list of templates
            if len(template) != 1:
                raise ConfigError(f"{type(dataset).__name__}.template holds {len(template)} templates; our methods "
                                  f"take one text template: give the dataset class a one-template `template`.")
            template = template[0]
        if template is None:
            print(f"No text template of ours for dataset {name!r}: using {DEFAULT_TEMPLATE!r} "
                  f"(give the dataset class a `template` attribute to choose another)")
            template = DEFAULT_TEMPLATE
        cfg = self._method_cfg(self.cfg)
        return BuildContext(cfg=cfg, classnames=list(dataset.classnames), template=template, device=self.device,
                            backbone=lambda name: config_backbone(cfg, name)[0].to(self.device))

    @_dassl_log
    def build_model(self) -> None:
        cfg = self._method_cfg(self.cfg)
        self.precision = resolve_precision(self.method.precision(cfg), self.device)
        self.head = self.method.head(cfg)
        self._use(self.method.build(self._context(), for_training=self.method.trains))

    def _use(self, model) -> None:
        """Train ``model`` with our optimiser, schedule and step; Dassl saves and loads it by our folder name."""
        self.model = model
        self.epoch_hook = None
        folder = self.method.model_folder
        self._models.pop(folder, None)
        if not self.method.trains:
            return
        cfg = self._method_cfg(self.cfg)
        self.optim, self.sched = build_protocol_optimizer(self.method.trainable_parameters(model), cfg.OPTIM,
                                                          self.device)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "amp")
        self.step = TrainStep(model, self.optim, scaler, self.precision, self.device,
                              graphs=bool(cfg.TRAIN.CUDA_GRAPH))
        self.register_model(folder, model, self.optim, self.sched)
        self.epoch_hook = self.method.epoch_hook(cfg, model)

    def train(self, *args, **kwargs):
        if not self.method.trains:
            raise ConfigError(f"{self.METHOD} has nothing to train: run it with --eval-only.")
        return super().train(*args, **kwargs)

    def model_inference(self, images):
        with autocast_context(resolve_precision(self.cfg.TEST.PREC, self.device), self.device):
            return self.model.forward_eval(images)[self.head].float()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def before_epoch(self) -> None:
        if self.epoch_hook and self.epoch == self.start_epoch and self.start_epoch > 0:
            raise ConfigError(f"{self.METHOD} keeps training state besides its parameters that Dassl's resume "
                              f"does not restore; run it with our train.py to resume, or start over.")
        self.step.new_epoch()  # the learning rate may have changed

    def after_epoch(self) -> None:
        if self.epoch_hook:  # before Dassl's end-of-training checkpoint and test
            self.epoch_hook.after_epoch(self.epoch + 1, self.model)
            if self.epoch + 1 == self.max_epoch:
                self.epoch_hook.finish(self.model)
        super().after_epoch()

    def forward_backward(self, batch) -> dict:
        images, labels = self.parse_batch_train(batch)
        loss, fused = self.step(images, labels)
        loss = float(loss)
        check_loss(loss, self.epoch, self.batch_idx)
        if self.batch_idx + 1 == self.num_batches:  # protocol: the scheduler steps inside the last batch
            self.update_lr()
        return {"loss": loss, "acc": compute_accuracy(fused, labels)[0].item()}

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name="") -> None:
        path = ckpt.save_checkpoint(directory, folder=self.method.model_folder, state_dict=self.model.state_dict(),
                                    epoch=epoch + 1, arch=self.method.arch(self.model),
                                    optimizer=self.optim.state_dict(), scheduler=self.sched.state_dict())
        print(f"Checkpoint saved to {path}")

    @_dassl_log
    def load_model(self, directory, epoch=None) -> None:
        """As our --eval-only: our files and the official ones, --load-epoch honoured, the architecture
        from the checkpoint (never the config's), a strict load."""
        if not self.method.trains:
            return  # nothing to load
        ck = read_eval_checkpoint(directory, epoch, self.method.model_folder)
        self._use(self.method.build_for_eval(self._context(), ck))


def _dassl_class(method_name: str, as_name: str) -> type:
    return type(as_name, (_HarnessTrainer,), {"METHOD": method_name, "__module__": __name__,
                                              "__qualname__": as_name})


def register(method: str, as_name: str | None = None):
    """Register our ``method`` in Dassl's TRAINER_REGISTRY as ``as_name`` (default: the method's own
    name). A name the repository already registered is left alone, with a warning; returns the
    registered class or None."""
    if method not in registry.names():
        raise ValueError(f"unknown method {method!r}; ours are {', '.join(registry.names())}")
    name = as_name or method
    if name in TRAINER_REGISTRY.registered_names():
        existing = TRAINER_REGISTRY.get(name)
        if getattr(existing, "METHOD", None) == method and existing.__module__ == __name__:  # ours (e.g. a reload)
            return existing
        warnings.warn(f"Dassl already has a trainer named {name!r} ({existing.__module__}.{existing.__qualname__}); "
                      f"it is left as it is and ours is not registered under that name. To run ours too, call "
                      f"mmrl.integrations.dassl.register({method!r}, as_name={method + '_mmrl'!r}) and pass "
                      f"--trainer {method}_mmrl.", stacklevel=2)
        return None
    cls = _dassl_class(method, name)
    TRAINER_REGISTRY.register(cls)
    return cls


for _method in registry.names():
    register(_method)
