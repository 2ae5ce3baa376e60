"""Prediction entropy on the target (Morerio, Cavazza & Murino, "Minimal-Entropy Correlation Alignment
for Unsupervised Deep Domain Adaptation", ICLR 2018)."""

from __future__ import annotations

import numpy as np

from crossfuse.registry import SELECTION_CRITERIA
from crossfuse.selection.base import Evidence, SelectionCriterion


def mean_entropy(probabilities: np.ndarray) -> float:
    """``mean_i -sum_c p_ic log p_ic``."""
    p = np.clip(probabilities, 1e-12, 1.0)
    return float(-(p * np.log(p)).sum(1).mean())


@SELECTION_CRITERIA.register("entropy")
class TargetEntropy(SelectionCriterion):
    """Minus the mean Shannon entropy of the predictions on unlabelled target rows: confident target
    predictions score higher."""

    needs_target = True
    classification_only = True

    def score(self, evidence: Evidence) -> float:
        return -mean_entropy(evidence.target_probabilities)
