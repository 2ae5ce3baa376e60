"""Proxy A-distance between source and target features (Ben-David et al., NeurIPS 2007)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0, max_rows: int = 1000) -> float:
    """``d_A = 2 (1 - 2 eps)``, ``eps`` the 2-fold cross-validated error of a linear domain classifier.

    0 means the classifier cannot tell the domains apart; 2 means it always can. Each side is subsampled
    to at most ``max_rows`` rows and the two sides are balanced, so chance error is 0.5.
    """
    rng = np.random.default_rng(seed)
    n = min(len(source), len(target), max_rows)
    s = source[rng.choice(len(source), n, replace=False)]
    t = target[rng.choice(len(target), n, replace=False)]
    x = np.concatenate([s, t])
    y = np.r_[np.zeros(n), np.ones(n)]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    error = 1 - cross_val_score(classifier, x, y, cv=2).mean()
    return float(2 * (1 - 2 * min(error, 0.5)))
