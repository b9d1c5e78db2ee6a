"""The training / evaluation loop of the protocol.

See docs/protocol.md#optimiser-and-schedule and #training-loop-checkpoints-and-evaluation.
"""
from __future__ import annotations

import datetime
import logging
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tabulate import tabulate
from tqdm import tqdm

from mmrl.clip.backbone import BackboneInfo, image_size, shared_backbone
from mmrl.data.fileio import atomic_path
from mmrl.engine import checkpoint as ckpt
from mmrl.engine import rundir
from mmrl.engine.rundir import PREDICTIONS
from mmrl.engine.evaluator import Classification
from mmrl.engine.multi_eval import evaluate_together
from mmrl.engine.precision import resolve_precision
from mmrl.engine.schedule import build_protocol_optimizer
from mmrl.engine.train_step import TrainStep, state_for
from mmrl.errors import CheckpointError, ConfigError, RunError
from mmrl.models.mmrl import count_parameters
from mmrl.trainers import BuildContext, EvalCheckpoint, registry
from mmrl.utils.rng import configure_cuda, deterministic_requested

log = logging.getLogger("mmrl.engine")


class AverageMeter:
    def __init__(self) -> None:
        self.val = self.sum = 0.0
        self.count = 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = float(val)
        self.sum += float(val) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(self.count, 1)


def seed_everything(seed: int) -> None:
    """Python, NumPy, torch, CUDA, in that order; nothing else (docs/protocol.md#the-random-streams-of-a-run)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def rng_state() -> dict:
    st = np.random.get_state()
    out = {"python": random.getstate(), "torch": torch.get_rng_state(),
           "numpy": (st[0], torch.from_numpy(st[1].copy()), int(st[2]), int(st[3]), float(st[4]))}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy(), n[2], n[3], n[4]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def config_backbone(cfg, name: str):
    """The shared frozen backbone ``name`` with the config's weight settings, checked against INPUT.SIZE."""
    log.info("Loading CLIP (backbone: %s)", name)
    clip, info = shared_backbone(name, cfg.MODEL.BACKBONE.WEIGHTS, cfg.MODEL.BACKBONE.CACHE_DIR)
    size = image_size(clip)
    if tuple(cfg.INPUT.SIZE) != (size, size):
        raise ConfigError(f"INPUT.SIZE {tuple(cfg.INPUT.SIZE)} does not match backbone {name}'s input size "
                          f"{size}; set INPUT.SIZE ({size}, {size}).")
    return clip, info


def read_eval_checkpoint(model_dir: str, load_epoch: int | None, folder: str) -> EvalCheckpoint:
    """The checkpoint an evaluation of ``model_dir`` loads (ours or an official one)."""
    if not model_dir:
        raise CheckpointError("--eval-only needs --model-dir (the training run to evaluate); "
                              "only a method that trains nothing evaluates without one.")
    path = rundir.find_checkpoint(model_dir, load_epoch, folder)
    sd, arch, epoch = ckpt.read_for_eval(path)
    return EvalCheckpoint(path=str(path), state_dict=sd, arch=arch, epoch=epoch)


def check_loss(loss: float, epoch: int, batch_idx: int) -> None:
    """A non-finite loss fails the run instead of reporting an accuracy."""
    if not math.isfinite(loss):
        raise RunError(f"the loss became {loss} at epoch {epoch + 1}, batch {batch_idx + 1}: "
                       f"training diverged (try a lower OPTIM.LR or PREC fp32); no accuracy is reported.")


def evaluate_trainers(trainers: Sequence[Trainer]) -> list[dict[str, Any]]:
    """One pass over the first trainer's test loader for every trainer's model, each scored with
    its own head; the trainers agree on ``shared_pass.run_key`` (the runs the engine groups)."""
    first = trainers[0]
    bar = tqdm(first.test_loader, leave=False, disable=not sys.stderr.isatty(), file=sys.stderr)
    return evaluate_together([t.model for t in trainers], bar, [t.head for t in trainers], first.device,
                             first.precision["test_used"],
                             save_logits=any(bool(t.cfg.TEST.SAVE_LOGITS) for t in trainers))


class Trainer:
    def __init__(self, cfg, output_dir: Path, *, eval_only: bool = False, model_dir: str = "",
                 load_epoch: int | None = None) -> None:
        self.cfg = cfg
        self.output_dir = output_dir
        self.eval_only = eval_only
        self.model_dir = model_dir
        self.load_epoch = load_epoch
        self.name = cfg.TRAINER.NAME
        self.method = registry.get(self.name)
        use_cuda = torch.cuda.is_available() and cfg.USE_CUDA
        self.device = torch.device("cuda" if use_cuda else "cpu")
        if use_cuda:
            configure_cuda(deterministic_requested())
        requested = self.method.precision(cfg)
        # training arithmetic (PREC) and evaluation arithmetic (TEST.PREC), requested and used here
        self.precision = {"requested": requested, "used": resolve_precision(requested, self.device),
                          "test_requested": cfg.TEST.PREC, "test_used": resolve_precision(cfg.TEST.PREC, self.device)}
        for key, kind in (("PREC", ""), ("TEST.PREC", "test_")):
            want, used = self.precision[kind + "requested"], self.precision[kind + "used"]
            if used != want and not (key == "PREC" and eval_only):
                log.warning("%s %s needs CUDA; running in %s on %s", key, want, used, self.device)
        self.start_epoch = 0
        self.epoch_hook = None  # the method's training state beyond its parameters (set when training)
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.loaded_checkpoint: dict | None = None  # {"path", "sha256", "epoch"} of an evaluated checkpoint
        self.backbone_info: BackboneInfo | None = None
        self.timings: dict[str, float] = {}

    # -- construction -----------------------------------------------------------------------
    def build_data(self) -> None:
        from mmrl.data.loaders import build_train_loader
        from mmrl.data.testcache import build_cached_test_loader
        from mmrl.data.transforms import build_test_transform, build_train_transform
        from mmrl.datasets import build_dataset
        cfg = self.cfg
        log.info("Loading trainer: %s", self.name)
        log.info("Loading dataset: %s", cfg.DATASET.NAME)
        self.data = build_dataset(cfg.DATASET.NAME, cfg.DATASET.ROOT, num_shots=cfg.DATASET.NUM_SHOTS,
                                  seed=cfg.SEED, subsample=cfg.DATASET.SUBSAMPLE_CLASSES,
                                  fewshot_dir=cfg.DATASET.FEWSHOT_DIR or None)
        self.tf_train = build_train_transform(cfg)
        self.tf_test = build_test_transform(cfg)
        needs_train = not self.eval_only
        self.train_loader = build_train_loader(cfg, self.data.train_x, self.tf_train) if needs_train else None
        # decoded test images are cached once per split and transform (TEST.CACHE_DIR, "none" = off)
        self.test_loader = build_cached_test_loader(cfg, self.data.test, self.tf_test, name=cfg.DATASET.NAME,
                                                    dataset_dir=self.data.dataset_dir)
        rows = [["Dataset", cfg.DATASET.NAME], ["# classes", f"{self.data.num_classes:,}"],
                ["# train_x", f"{len(self.data.train_x):,}"]]
        if self.data.val:
            rows.append(["# val", f"{len(self.data.val):,}"])
        rows.append(["# test", f"{len(self.data.test):,}"])
        log.info(tabulate(rows, tablefmt="simple"))

    def _backbone(self, name: str):
        clip, self.backbone_info = config_backbone(self.cfg, name)
        return clip.to(self.device)

    def build_model(self) -> None:
        cfg = self.cfg
        ctx = BuildContext(cfg=cfg, classnames=list(self.data.classnames), template=self.data.template,
                           device=self.device, backbone=self._backbone)
        if self.eval_only and self.method.trains:
            ck = read_eval_checkpoint(self.model_dir, self.load_epoch, self.method.model_folder)
            self.model = self.method.build_for_eval(ctx, ck)
            log.info('Loading weights to %s from "%s" (epoch = %s)', self.method.model_folder, ck.path, ck.epoch)
            self.loaded_checkpoint = {"path": ck.path, "sha256": rundir.file_sha256(ck.path), "epoch": ck.epoch,
                                      **({"notes": ck.notes} if ck.notes else {})}
        else:
            self.model = self.method.build(ctx, for_training=not self.eval_only)
        self.head = self.method.head(cfg)
        if not self.eval_only:
            self.method.arch(self.model)  # checkpoints store it: a method without one fails now, not after epoch 1
            params = self.method.trainable_parameters(self.model)
            self.optimizer, self.scheduler = build_protocol_optimizer(params, cfg.OPTIM, self.device)
            self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision["used"] == "amp")
            self.step = TrainStep(self.model, self.optimizer, self.scaler, self.precision["used"], self.device,
                                  graphs=bool(cfg.TRAIN.CUDA_GRAPH))
            self.epoch_hook = self.method.epoch_hook(cfg, self.model)
        log.info("Loading evaluator: Classification")

    def parameter_counts(self) -> dict[str, int]:
        trainable, total = count_parameters(self.model)
        return {"trainable": trainable, "total": total}

    # -- checkpoints ------------------------------------------------------------------------
    def _resume_path(self) -> Path:
        return rundir.model_folder(self.output_dir, self.method.model_folder) / rundir.RESUME_NAME

    def save_resume(self, epoch_done: int) -> None:
        ckpt.atomic_torch_save({
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": epoch_done, "rng": rng_state(),
            "arch": self.method.arch(self.model),
            "epoch_hook": self.epoch_hook.state_dict() if self.epoch_hook else None,
            "backbone_sha256": self._backbone_sha256(),
            "num_workers": self.cfg.DATALOADER.NUM_WORKERS,
        }, self._resume_path())

    def _backbone_sha256(self) -> str | None:
        """The frozen weights' file hash (None: weights without a file, fixed by the config)."""
        return self.backbone_info.sha256 if self.backbone_info is not None else None

    def try_resume(self) -> None:
        path = self._resume_path()
        if not path.is_file():
            log.info("No checkpoint found, train from scratch")
            return
        state = ckpt.load_resume_file(path, self.output_dir)
        if state.get("arch") != self.method.arch(self.model):
            raise CheckpointError(f"{path} was written for another architecture {state.get('arch')}; "
                                  f"move the run directory aside or delete that file to start over.")
        trained_on, now = state.get("backbone_sha256"), self._backbone_sha256()
        if trained_on and now and trained_on != now:  # a weights file is in the config by its path only
            raise CheckpointError(
                f"{path} was trained on backbone weights with sha256 {trained_on[:12]}, but this run loaded "
                f"{self.backbone_info.path} (sha256 {now[:12]}): resuming would continue the training on other "
                f"frozen weights. Set MODEL.BACKBONE.WEIGHTS to a file holding the weights it was trained "
                f"with, or move the run directory aside to start over.")
        workers, now_workers = state.get("num_workers"), self.cfg.DATALOADER.NUM_WORKERS
        if workers is not None and workers != now_workers:  # out of the hash, yet it changes the augmentations
            raise CheckpointError(
                f"{path} was trained with DATALOADER.NUM_WORKERS {workers}, this run has {now_workers}: the loader "
                f"workers draw the augmentations (docs/protocol.md), so the remaining epochs would make a run that "
                f"is neither's. Pass DATALOADER.NUM_WORKERS {workers} to resume, or move the run directory aside "
                f"to start over.")
        log.info("Found checkpoint at %s (will resume training)", path.parent)
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state_for(self.optimizer, state["optimizer"]))
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] or not self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        else:  # USE_CUDA is no part of a run's identity: amp steps continue fp32 ones (written on the CPU)
            log.warning("%s was written by training steps without a grad scaler (no amp, e.g. on the CPU); "
                        "the amp steps from here start from a fresh loss scale", path)
        if self.epoch_hook:
            self.epoch_hook.load_state_dict(state.get("epoch_hook") or {})
        set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"])
        log.info("Previous epoch: %d", self.start_epoch)

    # -- training ---------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        self.try_resume()
        t0 = time.time()
        fault = os.environ.get("MMRL_FAULT_AFTER_EPOCH")  # test hook: simulate a killed run
        for epoch in range(self.start_epoch, self.max_epoch):
            self.run_epoch(epoch)
            last = epoch + 1 == self.max_epoch
            if self.epoch_hook:
                self.epoch_hook.after_epoch(epoch + 1, self.model)
                if last:
                    self.epoch_hook.finish(self.model)
            freq = self.cfg.TRAIN.CHECKPOINT_FREQ
            if last or (freq > 0 and (epoch + 1) % freq == 0):
                path = ckpt.save_checkpoint(self.output_dir, folder=self.method.model_folder,
                                            state_dict=self.model.state_dict(), epoch=epoch + 1,
                                            arch=self.method.arch(self.model), optimizer=self.optimizer.state_dict(),
                                            scheduler=self.scheduler.state_dict())
                log.info("Checkpoint saved to %s", path)
            # after the last epoch too (after its checkpoint): a run killed in its final test
            # resumes into that test instead of training again
            self.save_resume(epoch + 1)
            if fault is not None and int(fault) == epoch + 1 and not last:
                raise KeyboardInterrupt(f"MMRL_FAULT_AFTER_EPOCH={fault}")
        self.timings["train_s"] = time.time() - t0
        log.info("Finish training")
        metrics = {}
        if not self.cfg.TEST.NO_TEST:
            log.info("Deploy the last-epoch model")
            metrics = self.test()
        self._resume_path().unlink(missing_ok=True)
        log.info("Elapsed: %s", datetime.timedelta(seconds=round(time.time() - t0)))
        return metrics

    def run_epoch(self, epoch: int) -> None:
        self.model.train()
        loader = self.train_loader
        num_batches = len(loader)
        meters = {"loss": AverageMeter(), "acc": AverageMeter()}
        batch_time, data_time = AverageMeter(), AverageMeter()
        self.step.new_epoch()
        end = time.time()
        bar = tqdm(loader, total=num_batches, desc=f"epoch {epoch + 1}/{self.max_epoch}", leave=False,
                   disable=not sys.stderr.isatty(), file=sys.stderr)
        for batch_idx, batch in enumerate(bar):
            data_time.update(time.time() - end)
            images = batch["img"].to(self.device, non_blocking=True)
            labels = batch["label"].to(self.device, non_blocking=True)
            loss, fused = self.step(images, labels)
            # one host sync per step, for both numbers
            loss_val, acc = torch.stack([loss.float(), (fused.argmax(dim=1) == labels).float().mean() * 100.0]).tolist()
            check_loss(loss_val, epoch, batch_idx)
            if batch_idx + 1 == num_batches:  # protocol: the scheduler steps inside the last batch
                self.scheduler.step()
            meters["loss"].update(loss_val, labels.numel())
            meters["acc"].update(acc, labels.numel())
            batch_time.update(time.time() - end)
            freq = self.cfg.TRAIN.PRINT_FREQ
            if (batch_idx + 1) % freq == 0 or num_batches < freq:
                remaining = (num_batches - batch_idx - 1) + (self.max_epoch - epoch - 1) * num_batches
                eta = datetime.timedelta(seconds=int(batch_time.avg * remaining))
                log.info(
                    f"epoch [{epoch + 1}/{self.max_epoch}] batch [{batch_idx + 1}/{num_batches}] "
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) data {data_time.val:.3f} ({data_time.avg:.3f}) "
                    f"loss {meters['loss'].val:.4f} ({meters['loss'].avg:.4f}) "
                    f"acc {meters['acc'].val:.4f} ({meters['acc'].avg:.4f}) "
                    f"lr {self.optimizer.param_groups[0]['lr']:.4e} eta {eta}")
            end = time.time()

    # -- evaluation -------------------------------------------------------------------------
    def test(self) -> dict[str, Any]:
        """This run's own test pass: the shared pass with one model."""
        t0 = time.time()
        log.info("Evaluate on the *test* set")
        out = evaluate_trainers([self])[0]
        self.timings["eval_s"] = time.time() - t0
        return self.finish_test(out)

    def finish_test(self, out: dict[str, Any]) -> dict[str, Any]:
        """Score predictions (from this model's own pass or a shared one) and write them."""
        evaluator = Classification()
        pred = torch.as_tensor(out["pred"])
        label = torch.as_tensor(out["label"])
        evaluator.process_predictions(pred, label)
        metrics = evaluator.evaluate()
        logits = out.get("logits") if self.cfg.TEST.SAVE_LOGITS else None
        self.write_predictions(pred.numpy(), label.numpy(), None if logits is None else torch.as_tensor(logits).numpy())
        return metrics

    def write_predictions(self, pred: np.ndarray, label: np.ndarray, logits: np.ndarray | None) -> None:
        impaths = np.array([self.data.relpath(it) for it in self.data.test])
        arrays = {"impath": impaths, "label": label.astype(np.int64), "pred": pred.astype(np.int64),
                  "head": np.array(self.head)}
        if logits is not None:
            arrays["logits"] = logits.astype(np.float32)
        with atomic_path(self.output_dir / PREDICTIONS) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
