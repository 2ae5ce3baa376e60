"""The contract of a label-free selection criterion, and what it is given to score an epoch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass
class Evidence:
    """What one epoch's model gives a criterion: predictions on the labelled source-validation rows, on
    the unlabelled target rows (when the criterion ``needs_target``), and the validation rows'
    importance weights ``p_t / p_s`` (when it ``needs_weights``). Never a target label.

    ``val_probabilities`` are class probabilities ``(N, C)``, or predicted values ``(N, 1)`` (``(N, k)``
    with ``val_labels`` ``(N, k)`` for several targets) when ``kind`` is ``'regression'``.
    """

    val_probabilities: np.ndarray
    val_labels: np.ndarray
    target_probabilities: np.ndarray | None = None
    val_weights: np.ndarray | None = None
    kind: str = "classification"

    @property
    def val_correct(self) -> np.ndarray:
        return (self.val_probabilities.argmax(1) == self.val_labels).astype(np.float64)

    @property
    def val_errors(self) -> np.ndarray:
        """Per-row absolute error of a regression's predictions; with several targets, the mean over them
        of each error over its target's spread on these rows, so that a target of large values does not
        decide the selection alone."""
        if self.val_labels.ndim == 2:
            spread = self.val_labels.std(0)
            spread = np.where(spread > 0, spread, 1.0)
            return (np.abs(self.val_probabilities - self.val_labels) / spread).mean(1)
        return np.abs(self.val_probabilities[:, 0] - self.val_labels)

    @property
    def val_losses(self) -> np.ndarray:
        """Per-row loss on the validation rows: cross-entropy, or squared error for regression."""
        if self.kind == "regression":
            return self.val_errors**2
        rows = np.arange(len(self.val_labels))
        return -np.log(np.clip(self.val_probabilities[rows, self.val_labels], 1e-12, 1))


class SelectionCriterion:
    """Scores an epoch without target labels; higher is better. The training loop keeps the latest
    epoch whose score is within :meth:`tolerance` of the best.

    Subclasses set ``needs_target`` / ``needs_weights`` and implement :meth:`score`; :meth:`fit` sees the
    training rows once before training (for a density ratio, say).
    """

    needs_target = False
    needs_weights = False
    #: Criteria that read class probabilities cannot score a regression.
    classification_only = False
    #: The model's objective (``'classification'`` or ``'regression'``), set before training.
    objective = "classification"
    #: Whether the run has a target domain (set before training); ``False`` for a plain supervised fit,
    #: where the test rows are assumed to come from the source's distribution.
    has_target = True

    def fit(
        self,
        source: Mapping[str, np.ndarray],
        target: Mapping[str, np.ndarray],
        source_val: Mapping[str, np.ndarray],
        seed: int = 0,
    ) -> SelectionCriterion:
        """Prepare on the training rows (inputs only); a no-op by default."""
        return self

    def validation_weights(self) -> np.ndarray | None:
        """The importance weights of the validation rows, when :meth:`fit` estimated them."""
        return None

    def score(self, evidence: Evidence) -> float:
        raise NotImplementedError

    def tolerance(self, best: float, n_validation: int) -> float:
        """How far below the best an epoch may score and still be chosen; 0 (exact ties) by default."""
        return 0.0


class ImportanceWeightedCriterion(SelectionCriterion):
    """A criterion on the source-validation rows re-weighted by ``w = p_t / p_s``, estimated once on the
    inputs by :class:`~crossfuse.evaluation.density_ratio.DensityRatio` (cheap, and the same for every
    candidate epoch)."""

    needs_weights = True

    def __init__(self) -> None:
        self.weights: np.ndarray | None = None

    def fit(self, source, target, source_val, seed: int = 0) -> SelectionCriterion:
        from crossfuse.evaluation.density_ratio import DensityRatio

        self.weights = DensityRatio(seed=seed).fit(source, target).weights(source_val)
        return self

    def validation_weights(self) -> np.ndarray | None:
        return self.weights
