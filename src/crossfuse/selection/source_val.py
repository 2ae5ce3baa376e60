"""Source-validation accuracy with the one-standard-error rule."""

from __future__ import annotations

import math

from crossfuse.registry import SELECTION_CRITERIA
from crossfuse.selection.base import Evidence, SelectionCriterion


@SELECTION_CRITERIA.register("source-val")
class SourceValidation(SelectionCriterion):
    """Accuracy on held-out labelled source rows.

    The loop keeps the latest epoch within one standard error of the best: the one-standard-error rule
    (Breiman et al., *Classification and Regression Trees*, 1984; Hastie, Tibshirani & Friedman, *The
    Elements of Statistical Learning*, section 7.10), which prefers the later, longer-adapted model among
    those the validation set cannot tell apart. With ``k = best n`` correct out of ``n``, the Agresti-Coull
    estimate ``p~ = (k + 2) / (n + 4)`` keeps the error above zero at 100% accuracy:
    ``SE = sqrt(p~ (1 - p~) / (n + 4))``. Without it, one lucky validation sample decides the epoch
    (the README's *Model selection* measures how much that moved results).

    A run without any target domain (a plain supervised fit: ``MultimodalClassifier.fit(X, y)``) keeps
    its best epoch instead (exact ties go to the later one): no later epoch is more adapted there, and a
    later one within the error is only a more over-fitted one (on 57 real tables, 0.4 points of accuracy
    on average, most on the small noisy ones: the README's *Model selection*).

    For regression the score is minus the mean absolute error on those rows, and the best epoch is kept
    (exact ties go to the later one).
    """

    def score(self, evidence: Evidence) -> float:
        if evidence.kind == "regression":
            return -float(evidence.val_errors.mean())
        return float(evidence.val_correct.mean())

    def tolerance(self, best: float, n_validation: int) -> float:
        if n_validation <= 0 or self.objective == "regression" or not self.has_target:
            return 0.0
        p = (best * n_validation + 2) / (n_validation + 4)
        return math.sqrt(p * (1 - p) / (n_validation + 4))
