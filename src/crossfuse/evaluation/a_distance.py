"""Proxy A-distance between source and target features (Ben-David et al., NeurIPS 2007).

The domain classifier is scikit-learn's recipe (``make_pipeline(StandardScaler(), LogisticRegression(C=1))``
scored by ``cross_val_score(cv=2)``), solved here with numpy: importing scikit-learn took a second of every
``crossfuse run``, which always reports this distance. The logistic regression is solved to convergence
by Newton's method, so it finds the optimum that scikit-learn's L-BFGS approaches to its tolerance; a test
compares the two.
"""

from __future__ import annotations

import numpy as np


def stratified_halves(labels: np.ndarray) -> np.ndarray:
    """Fold (0 or 1) of every row in scikit-learn's unshuffled two-fold ``StratifiedKFold``: each class's
    rows in order, the first share to fold 0, the shares taken from the sorted labels dealt alternately."""
    classes, encoded = np.unique(labels, return_inverse=True)
    dealt = np.sort(encoded)
    allocation = np.stack([np.bincount(dealt[i::2], minlength=len(classes)) for i in (0, 1)])
    folds = np.empty(len(labels), dtype=int)
    for k in range(len(classes)):
        folds[encoded == k] = np.repeat([0, 1], allocation[:, k])
    return folds


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, c: float = 1.0) -> tuple[np.ndarray, float]:
    """``argmin_{w, b} 0.5 ||w||^2 + C sum_i log(1 + exp(-s_i (w.x_i + b)))``, ``s_i = 2 y_i - 1``, the
    intercept not penalised (scikit-learn's L2 logistic regression), by Newton's method with a backtracking
    line search, in float64."""
    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    signs = 2.0 * y - 1.0
    penalty = np.r_[np.ones(d), 0.0]
    theta = np.zeros(d + 1)

    def objective(t: np.ndarray) -> float:
        return 0.5 * float(penalty @ t**2) + c * float(np.logaddexp(0.0, -signs * (design @ t)).sum())

    value = objective(theta)
    for _ in range(100):
        margins = signs * (design @ theta)
        p = 0.5 * (1.0 + np.tanh(-0.5 * margins))  # sigma(-margin), without overflow
        gradient = penalty * theta - c * design.T @ (signs * p)
        if np.abs(gradient).max() < 1e-10 * max(1.0, np.abs(theta).max()):
            break
        curvature = c * p * (1.0 - p)
        hessian = (design * curvature[:, None]).T @ design + np.diag(penalty + 1e-12)
        direction = np.linalg.solve(hessian, gradient)
        step = 1.0
        while True:
            candidate = theta - step * direction
            candidate_value = objective(candidate)
            if candidate_value <= value - 1e-4 * step * float(gradient @ direction) or step < 1e-10:
                break
            step /= 2
        theta, value = candidate, candidate_value
    return theta[:d], float(theta[d])


def fold_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Accuracy on the test fold of the logistic regression fitted on standardised training rows (the
    scaler fitted on the training fold; a constant column is left unscaled, as scikit-learn does)."""
    mean, scale = train_x.mean(0), train_x.std(0)
    scale[scale < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)] = 1.0
    w, b = fit_logistic_regression((train_x - mean) / scale, train_y)
    predicted = (((test_x - mean) / scale) @ w + b > 0).astype(float)
    return float((predicted == test_y).mean())


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0, max_rows: int = 1000) -> float:
    """``d_A = 2 (1 - 2 eps)``, ``eps`` the 2-fold cross-validated error of a linear domain classifier.

    0 means the classifier cannot tell the domains apart; 2 means it always can. Each side is subsampled
    to at most ``max_rows`` rows and the two sides are balanced, so chance error is 0.5.
    """
    rng = np.random.default_rng(seed)
    n = min(len(source), len(target), max_rows)
    s = source[rng.choice(len(source), n, replace=False)]
    t = target[rng.choice(len(target), n, replace=False)]
    x = np.concatenate([s, t]).astype(np.float64)
    y = np.r_[np.zeros(n), np.ones(n)]
    folds = stratified_halves(y)
    accuracies = [fold_accuracy(x[folds != k], y[folds != k], x[folds == k], y[folds == k]) for k in (0, 1)]
    error = 1 - float(np.mean(accuracies))
    return float(2 * (1 - 2 * min(error, 0.5)))
