"""The proxy A-distance's numpy domain classifier against scikit-learn's pipeline it stands in for."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crossfuse.evaluation.a_distance import fit_logistic_regression, proxy_a_distance, stratified_halves


def sklearn_proxy_a_distance(source, target, seed=0, max_rows=1000):
    """The previous implementation, verbatim: scikit-learn's pipeline and two-fold cross-validation."""
    rng = np.random.default_rng(seed)
    n = min(len(source), len(target), max_rows)
    s = source[rng.choice(len(source), n, replace=False)]
    t = target[rng.choice(len(target), n, replace=False)]
    x, y = np.concatenate([s, t]), np.r_[np.zeros(n), np.ones(n)]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    error = 1 - cross_val_score(classifier, x, y, cv=2).mean()
    return float(2 * (1 - 2 * min(error, 0.5)))


@pytest.mark.parametrize("n", [4, 7, 10, 11])
def test_the_folds_are_scikit_learns_stratified_halves(n):
    labels = np.r_[np.zeros(n), np.ones(n + 3)]
    expected = np.empty(len(labels), dtype=int)
    for fold, (_, test) in enumerate(StratifiedKFold(2).split(np.zeros((len(labels), 1)), labels)):
        expected[test] = fold
    assert (stratified_halves(labels) == expected).all()


def test_the_logistic_regression_reaches_the_optimum_scikit_learn_approaches():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12))
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(float)
    w, b = fit_logistic_regression(x, y)
    theirs = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(x, y)
    assert np.allclose(w, theirs.coef_[0], atol=1e-5) and b == pytest.approx(theirs.intercept_[0], abs=1e-5)
    # the optimum: the gradient of 0.5 |w|^2 + sum log(1 + exp(-s (w.x + b))) vanishes
    s = 2 * y - 1
    p = 1 / (1 + np.exp(s * (x @ w + b)))
    assert np.abs(w - x.T @ (s * p)).max() < 1e-7 and abs((s * p).sum()) < 1e-7


@pytest.mark.parametrize(
    ("dims", "shift", "sizes"),
    [(2, 0.0, (300, 500)), (16, 0.2, (900, 450)), (16, 1.0, (370, 830)), (64, 0.2, (1200, 1200)),
     (64, 5.0, (500, 520)), (8, 0.5, (2000, 1500))],
)  # fmt: skip
def test_proxy_a_distance_equals_scikit_learns(dims, shift, sizes):
    rng = np.random.default_rng(dims)
    source = np.maximum(rng.normal(size=(sizes[0], dims)), 0).astype(np.float32)  # ReLU features
    target = np.maximum(rng.normal(size=(sizes[1], dims)) + shift, 0).astype(np.float32)
    source[:, 0] = target[:, 0] = 0.0  # a dead unit: a constant column
    assert proxy_a_distance(source, target, seed=3) == pytest.approx(
        sklearn_proxy_a_distance(source, target, seed=3), abs=1e-9
    )
