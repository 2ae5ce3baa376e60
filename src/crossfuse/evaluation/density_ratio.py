"""Density ratio ``p_target(x) / p_source(x)`` from a probabilistic domain classifier.

Each modality is flattened, standardised and reduced by PCA to at most ``components`` dimensions (fitted
on source and target together); a logistic regression then separates source (0) from target (1). By
Bayes' rule ``p_t(x) / p_s(x) = (n_s / n_t) * P(t | x) / P(s | x)``. Weights are clipped at
``max_weight`` (raw ratios from a confident classifier explode) and scaled to mean 1 on the source rows
they were fitted on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class DensityRatio:
    """Estimate ``w(x) = p_t(x) / p_s(x)`` on the inputs of every modality.

    Parameters
    ----------
    components
        PCA dimensions per modality.
    max_weight
        Clip of the weights (before the mean-1 scaling).
    regularisation
        Inverse L2 strength ``C`` of the logistic regression.
    flatten
        Exponent applied to the clipped ratio (Shimodaira's flattening, 1 = none): values below 1
        trade bias for variance when the domains barely overlap.
    """

    def __init__(
        self,
        components: int = 32,
        max_weight: float = 10.0,
        regularisation: float = 0.1,
        seed: int = 0,
        flatten: float = 1.0,
    ):
        self.components, self.max_weight, self.regularisation = components, max_weight, regularisation
        self.seed, self.flatten = seed, flatten

    def _design(self, inputs: Mapping[str, np.ndarray], fit: bool) -> np.ndarray:
        # scikit-learn is imported here, when a method or criterion needs weights: it costs a second
        from sklearn.decomposition import PCA
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        columns = []
        for m in sorted(inputs):
            flat = inputs[m].reshape(len(inputs[m]), -1).astype(np.float64)
            unknown = np.isnan(flat)
            if fit:
                missing = unknown.all(1)
                complete = not unknown[~missing].any()
                self.means[m] = flat[~missing].mean(0) if complete else present_means(flat)
            if unknown.any():  # a missing value, or a sample that lacks the modality, is the training mean
                flat = np.where(unknown, self.means[m], flat)
            if fit:
                k = min(self.components, flat.shape[1], flat.shape[0] - 1)
                self.reducers[m] = make_pipeline(StandardScaler(), PCA(k, random_state=self.seed)).fit(flat)
            columns.append(self.reducers[m].transform(flat))
        return np.concatenate(columns, axis=1)

    def fit(self, source: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray]) -> DensityRatio:
        self.reducers: dict = {}
        self.means: dict = {}
        joined = {m: np.concatenate([source[m], target[m]]) for m in source}
        design = self._design(joined, fit=True)
        n_source = len(next(iter(source.values())))
        n_target = len(design) - n_source
        domain = np.r_[np.zeros(n_source), np.ones(n_target)]
        from sklearn.linear_model import LogisticRegression

        self.classifier = LogisticRegression(C=self.regularisation, max_iter=2000).fit(design, domain)
        self.prior_ratio = n_source / n_target
        self.scale = 1.0
        self.scale = 1.0 / self.weights(source).mean()
        return self

    def target_probability(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``P(target | x)`` for each row."""
        return self.classifier.predict_proba(self._design(inputs, fit=False))[:, 1]

    def weights(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``min(max_weight, (n_s / n_t) P(t|x) / P(s|x)) ** flatten``, times the mean-1 scale."""
        p = np.clip(self.target_probability(inputs), 1e-6, 1 - 1e-6)
        return np.minimum(self.max_weight, self.prior_ratio * p / (1 - p)) ** self.flatten * self.scale


def present_means(flat: np.ndarray) -> np.ndarray:
    """Column means of ``flat`` over the values that are not NaN (0 for a column without any)."""
    present = ~np.isnan(flat)
    return np.where(present, flat, 0.0).sum(0) / np.maximum(present.sum(0), 1)
