"""Importance-weighted validation (Sugiyama, Krauledat & Müller, JMLR 2007)."""

from __future__ import annotations

from crossfuse.registry import SELECTION_CRITERIA
from crossfuse.selection.base import Evidence, ImportanceWeightedCriterion


@SELECTION_CRITERIA.register("iwv")
class ImportanceWeightedValidation(ImportanceWeightedCriterion):
    """``sum_i w_i 1[correct_i] / sum_i w_i`` over the source-validation rows, ``w = p_t / p_s``: the
    source accuracy re-weighted toward the target's input distribution (for regression, minus the
    weighted mean absolute error)."""

    def score(self, evidence: Evidence) -> float:
        weights = evidence.val_weights
        if evidence.kind == "regression":
            return -float((weights * evidence.val_errors).sum() / weights.sum())
        return float((weights * evidence.val_correct).sum() / weights.sum())
