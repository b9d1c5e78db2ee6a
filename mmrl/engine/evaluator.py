"""Classification evaluator: Dassl's result block, byte for byte (docs/protocol.md#the-result-block)."""
from __future__ import annotations

import logging

import numpy as np
import torch
from sklearn.metrics import f1_score

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
        macro_f1 = 100.0 * f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true), zero_division=0)
        for line in result_lines(self.total, self.correct, acc, err, macro_f1):
            log.info(line)
        return {"accuracy": acc, "error_rate": err, "macro_f1": macro_f1,
                "total": self.total, "correct": self.correct}


def result_lines(total: int, correct: int, acc: float, err: float, macro_f1: float) -> list[str]:
    return ["=> result", f"* total: {total:,}", f"* correct: {correct:,}", f"* accuracy: {acc:.1f}%",
            f"* error: {err:.1f}%", f"* macro_f1: {macro_f1:.1f}%"]
