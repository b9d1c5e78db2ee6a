"""Shared helpers for the engine tests (imported, not a conftest): a run's argv, record, checkpoint, logits."""
import json
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
FAST = ["MODEL.BACKBONE.NAME", "tiny-test", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "64",
        "TRAIN.PRINT_FREQ", "5"]


def write_eurosat(tmp_path_factory):
    from mmrl.datatools.synthetic import write_synthetic_dataset
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset("eurosat", root, n_per_class=20)
    return root


def argv(root, out, *extra_named, seed=1, trainer="MMRL", opts=(), epochs=2, subsample="base", shots=4):
    return ["--root", str(root), "--seed", str(seed), "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"),
            "--config-file", str(REPO / f"configs/trainers/{trainer}/vit_b16.yaml"),
            "--output-dir", str(out), *extra_named,
            "DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", subsample, "TASK", "B2N",
            *(["OPTIM.MAX_EPOCH", str(epochs)] if epochs is not None else []),
            "DATASET.FEWSHOT_DIR", str(Path(out).parent / "fewshot"),
            *FAST, *opts]


def record(out):
    return json.loads((Path(out) / "record.json").read_text())


def final_state(out):
    """The trainable tensors of a run's last checkpoint."""
    folder = Path(out) / "MultiModalRepresentationLearner"
    return torch.load(folder / (folder / "checkpoint").read_text().strip(), weights_only=True)["state_dict"]


def logits(out):
    """The scored logits a run wrote (TEST.SAVE_LOGITS True)."""
    return np.load(Path(out) / "predictions.npz")["logits"]


def make_losses_nan(monkeypatch):
    """Every training loss becomes NaN (the model's own loss times NaN, so it still has a graph)."""
    from mmrl.models.mmrl import MultiModalRepresentationLearner as M
    orig = M.loss_from_features

    def nan_loss(self, *a):
        loss, fused, parts = orig(self, *a)
        return loss * float("nan"), fused, parts
    monkeypatch.setattr(M, "loss_from_features", nan_loss)


def stand_in_methods(monkeypatch, *names):
    """Register a bare trainable method under each of ``names`` that is not registered, where
    the baselines stand in the registry's (row) order: before MMRL (tables and sweeps need a
    method's name and place, not its model)."""
    from mmrl.trainers import Method, registry
    have = {n: registry.get(n) for n in registry.names()}
    new = {n: type(n, (Method,), {"name": n, "display": n, "published_key": n, "model_folder": n})()
           for n in names if n not in have}
    at = list(have).index("MMRL")
    items = list(have.items())
    monkeypatch.setattr(registry, "_methods", dict(items[:at] + list(new.items()) + items[at:]))
