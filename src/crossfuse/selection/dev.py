"""Deep embedded validation (You et al., "Towards Accurate Model Selection in Deep Unsupervised Domain
Adaptation", ICML 2019)."""

from __future__ import annotations

import numpy as np

from crossfuse.registry import SELECTION_CRITERIA
from crossfuse.selection.base import Evidence, ImportanceWeightedCriterion


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """Deep embedded validation risk ``mean(w l) + eta mean(w) - eta``, ``eta = -Cov(w l, w) / Var(w)``."""
    weighted = weights * losses
    variance = weights.var(ddof=1) if len(weights) > 1 else 0.0
    eta = -np.cov(weighted, weights, ddof=1)[0, 1] / variance if variance > 0 else 0.0
    return float(weighted.mean() + eta * weights.mean() - eta)


@SELECTION_CRITERIA.register("dev")
class DeepEmbeddedValidation(ImportanceWeightedCriterion):
    """Minus the control-variate estimate of the target risk, :func:`dev_risk` of the validation rows'
    loss ``l_i`` (cross-entropy; squared error for regression) and weights ``w_i``. The weights are
    estimated on the inputs, once per run, rather than on each candidate's features as the paper does:
    cheaper, and the same for every epoch."""

    def score(self, evidence: Evidence) -> float:
        return -dev_risk(evidence.val_losses, evidence.val_weights)
