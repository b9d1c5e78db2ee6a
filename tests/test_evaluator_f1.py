"""The evaluator's macro-F1 is scikit-learn's, as Dassl calls it, without importing scikit-learn."""
import subprocess
import sys

import numpy as np
import pytest

from mmrl.engine.evaluator import macro_f1_score

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def dassl_f1(y_true, y_pred):
    return sklearn_metrics.f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true), zero_division=0)


@pytest.mark.parametrize("seed", range(40))
def test_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(1, 60))
    n = int(rng.integers(1, 400))
    y_true = rng.integers(0, n_classes, n) + int(rng.integers(0, 3)) * 7  # labels need not start at 0
    # predictions: mostly right, some wrong, some outside y_true's labels (never-true classes)
    y_pred = np.where(rng.random(n) < rng.random(), y_true, rng.integers(0, n_classes + 20, n))
    assert macro_f1_score(y_true, y_pred) == pytest.approx(dassl_f1(y_true, y_pred), abs=1e-12)


def test_edge_cases_equal_scikit_learn():
    cases = [([0, 0, 0], [1, 1, 1]),          # a label never predicted, predictions never true
             ([3], [3]), ([2, 5], [5, 2]), ([0, 1, 2, 3], [0, 0, 0, 0])]
    for t, p in cases:
        t, p = np.array(t), np.array(p)
        assert macro_f1_score(t, p) == pytest.approx(dassl_f1(t, p), abs=1e-12), (t, p)
    assert macro_f1_score(np.array([0, 1]), np.array([0, 1])) == 1.0
    assert macro_f1_score(np.array([0, 0]), np.array([1, 1])) == 0.0


def test_a_run_does_not_import_scikit_learn():
    code = "import sys, mmrl.engine.run, mmrl.engine.evaluator; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
