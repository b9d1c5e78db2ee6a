"""Classification evaluator: Dassl's result block, byte for byte (docs/protocol.md#the-result-block)."""
from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger("mmrl.engine")


class Classification:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.correct = 0
        self.total = 0
        self.y_true: list[np.ndarray] = []
        self.y_pred: list[np.ndarray] = []

    def process(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pred = logits.argmax(dim=1)
        self.process_predictions(pred, labels)
        return pred

    def process_predictions(self, pred: torch.Tensor, labels: torch.Tensor) -> None:
        self.correct += int((pred == labels).sum())
        self.total += int(labels.numel())
        self.y_true.append(labels.cpu().numpy())
        self.y_pred.append(pred.cpu().numpy())

    def evaluate(self) -> dict[str, float]:
        y_true = np.concatenate(self.y_true) if self.y_true else np.zeros(0, dtype=int)
        y_pred = np.concatenate(self.y_pred) if self.y_pred else np.zeros(0, dtype=int)
        acc = 100.0 * self.correct / max(self.total, 1)
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(y_true, y_pred)
        for line in result_lines(self.total, self.correct, acc, err, macro_f1):
            log.info(line)
        return {"accuracy": acc, "error_rate": err, "macro_f1": macro_f1,
                "total": self.total, "correct": self.correct}


def macro_f1_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Dassl's macro-F1: scikit-learn's ``f1_score(average="macro", labels=np.unique(y_true))``
    with its arithmetic (per label of y_true 2·tp / (true + predicted), then the plain mean),
    without importing scikit-learn (about 1 s a process)."""
    labels = np.unique(y_true)
    if labels.size == 0:
        return 0.0
    n = labels.size
    t = np.searchsorted(labels, y_true)
    p = np.minimum(np.searchsorted(labels, y_pred), n - 1)
    p = np.where(labels[p] == y_pred, p, -1)  # a predicted label outside y_true counts for none
    true_sum = np.bincount(t, minlength=n).astype(np.float64)
    pred_sum = np.bincount(p[p >= 0], minlength=n).astype(np.float64)
    tp = np.bincount(t[t == p], minlength=n).astype(np.float64)
    return float(np.mean(2.0 * tp / (true_sum + pred_sum)))  # true_sum >= 1 for every label


def result_lines(total: int, correct: int, acc: float, err: float, macro_f1: float) -> list[str]:
    return ["=> result", f"* total: {total:,}", f"* correct: {correct:,}", f"* accuracy: {acc:.1f}%",
            f"* error: {err:.1f}%", f"* macro_f1: {macro_f1:.1f}%"]
