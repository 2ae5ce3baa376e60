"""Soft neighbourhood density (Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, "Tune it the Right Way:
Unsupervised Validation of Domain Adaptation via Soft Neighborhood Density", ICCV 2021)."""

from __future__ import annotations

import numpy as np

from crossfuse.registry import SELECTION_CRITERIA
from crossfuse.selection.base import Evidence, SelectionCriterion


def soft_neighbourhood_density(probabilities: np.ndarray, temperature: float = 0.05) -> float:
    """``mean_i H(softmax_{j != i}(cos(p_i, p_j) / T))`` over the target rows' class probabilities ``p``.

    Each row's similarities to the other rows (cosine of the probability vectors, divided by the
    temperature ``T``, the paper's 0.05) become a distribution over its neighbours; its entropy is high
    when many neighbours are about as close, i.e. when the target predictions form dense clusters. A model
    whose target predictions are spread out, or collapsed onto too few points, scores low.
    """
    n = len(probabilities)
    if n < 2:
        return 0.0
    unit = probabilities / np.maximum(np.linalg.norm(probabilities, axis=1, keepdims=True), 1e-12)
    similarity = (unit @ unit.T) / temperature
    others = similarity[~np.eye(n, dtype=bool)].reshape(n, n - 1)  # a row is not its own neighbour
    others = others - others.max(1, keepdims=True)
    neighbours = np.exp(others)
    neighbours /= neighbours.sum(1, keepdims=True)
    return float(-(neighbours * np.log(np.clip(neighbours, 1e-12, 1.0))).sum(1).mean())


@SELECTION_CRITERIA.register("snd")
class SoftNeighbourhoodDensity(SelectionCriterion):
    """The soft neighbourhood density of the target predictions (:func:`soft_neighbourhood_density`);
    higher is better. At most ``max_rows`` target rows are used (the same seeded subset every epoch): the
    similarity matrix grows with their square.
    """

    needs_target = True
    classification_only = True

    def __init__(self, temperature: float = 0.05, max_rows: int = 2000) -> None:
        self.temperature, self.max_rows = temperature, max_rows

    def score(self, evidence: Evidence) -> float:
        probabilities = evidence.target_probabilities
        if len(probabilities) > self.max_rows:
            rows = np.random.default_rng(0).choice(len(probabilities), self.max_rows, replace=False)
            probabilities = probabilities[np.sort(rows)]
        return soft_neighbourhood_density(probabilities.astype(np.float64), self.temperature)
