"""Source-validation accuracy over the epochs whose target predictions did not collapse."""

from __future__ import annotations

from crossfuse.evaluation.warnings import collapse_warnings
from crossfuse.registry import SELECTION_CRITERIA
from crossfuse.selection.base import Evidence
from crossfuse.selection.source_val import SourceValidation

#: Taken off a collapsed epoch's accuracy: more than any accuracy, so that every epoch that did not
#: collapse ranks above every epoch that did, and the order within each group is kept.
COLLAPSE_PENALTY = 2.0


@SELECTION_CRITERIA.register("source-val-guarded")
class GuardedSourceValidation(SourceValidation):
    """:class:`SourceValidation` (accuracy on held-out labelled source rows, the latest epoch within one
    standard error of the best) among the epochs whose predictions on the unlabelled target rows have not
    piled into one class; when every epoch collapsed, exactly what ``source-val`` keeps.

    An epoch is collapsed when its most predicted target class takes more than the collapse flag's limit
    (:func:`~crossfuse.evaluation.warnings.collapse_warnings`: at most 90% of the rows, ``min(max(0.9,
    (1 + s) / 2), max(3 s, s + 0.25))`` for ``s`` the most frequent class's share of the validation
    rows). Its score is its accuracy minus :data:`COLLAPSE_PENALTY`. Label-free: it reads the target's
    predictions, never its labels. Adversarial alignment (DANN, CDAN, VADA, IWDAN) can keep learning the
    source while its target predictions fall into one class; ``source-val`` then keeps such an epoch
    (the README's *Separable domains*). Under a real change of the classes' shares, a target that is
    mostly one class is flagged as collapsed too, and this criterion then prefers epochs that spread their
    predictions: check it on labelled target rows there.
    """

    needs_target = True
    classification_only = True

    def score(self, evidence: Evidence) -> float:
        accuracy = super().score(evidence)
        labels = evidence.val_labels[evidence.val_labels >= 0]
        collapsed = bool(collapse_warnings(evidence.target_probabilities, labels))
        return accuracy - COLLAPSE_PENALTY if collapsed else accuracy

    def tolerance(self, best: float, n_validation: int) -> float:
        # the standard error of the accuracy itself, whichever group the best epoch is in
        return super().tolerance(best + COLLAPSE_PENALTY if best < 0 else best, n_validation)
