"""What a model is trained to predict: classes (cross-entropy) or a real value (regression).

The objective is a submodule of :class:`~crossfuse.model.MultimodalModel`; transfer methods take their
supervised loss from it (``model.objective.loss``), and evaluation turns the head's outputs into
predictions with it (``model.objective.predictions``). Regression's target scaling lives in its buffers,
so a saved model predicts in the user's units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.parallel import current_shard, global_sum

OBJECTIVES = ("auto", "classification", "regression")
REGRESSION_LOSSES = ("mse", "l1")
#: How far beyond the training outcomes' range a regression may predict, as a share of that range on
#: either side (``--regression-margin``); ``inf`` lets predictions go anywhere.
REGRESSION_MARGIN = 0.1


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``sum_i w_i l_i / sum_i w_i`` (plain mean when ``weights`` is ``None``).

    Over a batch split across ``w`` processes each returns ``w sum_{i in shard} w_i l_i / sum_i w_i``
    (the denominator over the global batch), whose average over processes is the global loss.
    """
    if weights is None:
        return losses.mean()
    world = current_shard()[1]
    return (weights * losses).sum() * world / global_sum(weights).clamp_min(1e-12)


class Classification(nn.Module):
    """Class logits, cross-entropy loss, softmax probabilities; optionally class-balanced
    (:meth:`balance`)."""

    kind = "classification"

    def __init__(self) -> None:
        super().__init__()
        #: ``(C,)`` weight of each class in :meth:`loss`, or ``None`` (every row weighs 1). Not part of
        #: the model's weights: a run sets it from its source labels, and prediction does not use it.
        self.class_weights: torch.Tensor | None = None

    def output_dim(self, n_classes: int) -> int:
        return n_classes

    def balance(self, labels: np.ndarray, n_classes: int) -> Classification:
        """Weigh class ``c`` by ``n / (K n_c)`` (scikit-learn's ``class_weight='balanced'``; ``n_c`` its
        rows among ``labels``, ``K`` the classes present, weight 1 for a class absent), so that every
        class counts as much in the loss whatever its share of the source: a model trained for equal
        class shares rather than the source's."""
        counts = np.bincount(np.asarray(labels)[np.asarray(labels) >= 0], minlength=n_classes)
        present = counts > 0
        weights = np.ones(n_classes)
        weights[present] = counts.sum() / (present.sum() * counts[present])
        self.class_weights = torch.tensor(weights, dtype=torch.float32)
        return self

    def weigh(self, given: Mapping[str, float], classes: list) -> Classification:
        """Weigh each class by ``given[class value]`` (scikit-learn's ``class_weight`` as a dict; the
        keys are the class values as text, a class left out weighs 1)."""
        names = [str(c) for c in classes]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ConfigError(
                f"class_weight: no class {', '.join(map(repr, unknown))} (the classes: {', '.join(names)})"
            )
        bad = {k: v for k, v in given.items() if not (np.isfinite(v) and v >= 0)}
        if bad or not any(given.get(n, 1.0) > 0 for n in names):
            raise ConfigError(f"class_weight: weights must be finite, >= 0 and not all 0 (got {given})")
        weights = [float(given.get(n, 1.0)) for n in names]
        self.class_weights = torch.tensor(weights, dtype=torch.float32)
        return self

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None):
        """``sum_i w_i a_{y_i} CE(outputs_i, y_i) / sum_i w_i a_{y_i}``, ``a`` the class weights
        (:meth:`balance`, :meth:`weigh`; 1 by default)."""
        if self.class_weights is not None:
            if self.class_weights.device != outputs.device:  # moved once, beside the logits
                self.class_weights = self.class_weights.to(outputs.device)
            by_class = self.class_weights[targets]
            weights = by_class if weights is None else weights * by_class
        if weights is None:
            return F.cross_entropy(outputs, targets)
        return weighted_mean(self.row_losses(outputs, targets), weights)

    def row_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` each row's cross-entropy."""
        return F.cross_entropy(outputs, targets, reduction="none")

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(batch, n_classes)``."""
        return torch.softmax(outputs, dim=-1)


class Regression(nn.Module):
    """``k`` real outputs per sample (one by default), trained on standardised targets.

    The head predicts ``z``; the loss compares it with ``(y - mean) / std`` (``mean``, ``std`` of the
    source training targets, :meth:`fit`, per target), squared (``'mse'``, the default) or absolute
    (``'l1'``), so the learning rate means the same whatever the targets' units; :meth:`predictions`
    gives ``z std + mean`` in those units. With several targets a row's loss is the mean over them of the
    standardised differences, so each target counts alike whatever its unit.

    The predictions are clipped to the training targets' range widened by ``margin`` times it on either
    side, ``[min - margin (max - min), max + margin (max - min)]`` per target (``margin=None`` or ``inf``:
    not clipped). A network of ReLUs extends linearly beyond its training inputs, so one input far
    outside them (a skewed amount, a new unit) can send a prediction anywhere: on the README's Fatality
    table, three such predictions in 1,008 took R^2 from 0.705 (clipped) to -0.036. Tree ensembles
    never predict beyond the training range at all; the margin still lets a model extrapolate a little
    under shift.
    The bounds are buffers only when clipping, so a model saved without them loads unchanged.
    """

    kind = "regression"

    def __init__(
        self, loss: str = "mse", n_targets: int = 1, margin: float | None = REGRESSION_MARGIN
    ) -> None:
        super().__init__()
        if loss not in REGRESSION_LOSSES:
            raise ConfigError(f"regression loss {loss!r}: choose from {', '.join(REGRESSION_LOSSES)}")
        if n_targets < 1:
            raise ConfigError(f"a regression needs at least one target (got {n_targets})")
        if margin is not None and not margin >= 0:
            raise ConfigError(
                f"regression margin {margin!r}: need a share >= 0 of the targets' range (inf: none)"
            )
        self.loss_kind, self.n_targets = loss, n_targets
        self.margin = None if margin is None or math.isinf(margin) else float(margin)
        # one target keeps scalar buffers: the layout of every model saved before several were possible
        shape = () if n_targets == 1 else (n_targets,)
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        if self.margin is not None:
            self.register_buffer("low", torch.full(shape, -math.inf))
            self.register_buffer("high", torch.full(shape, math.inf))

    def output_dim(self, n_classes: int) -> int:
        return self.n_targets

    def fit(self, targets: np.ndarray) -> Regression:
        """Set the target scaling, and the clipping bounds, from the source training targets (``(N,)``,
        or ``(N, k)``)."""
        values = np.asarray(targets, dtype=np.float64)
        if self.margin is not None:
            low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            widen = self.margin * (high - low)
            self.low.copy_(torch.as_tensor(low - widen, dtype=self.low.dtype))
            self.high.copy_(torch.as_tensor(high + widen, dtype=self.high.dtype))
        if self.n_targets == 1:
            std = float(values.std())
            self.mean.fill_(float(values.mean()))
            self.std.fill_(std if std > 0 else 1.0)
            return self
        std = values.std(0)
        self.mean.copy_(torch.from_numpy(values.mean(0)))
        self.std.copy_(torch.from_numpy(np.where(std > 0, std, 1.0)))
        return self

    def standardise(self, targets: torch.Tensor) -> torch.Tensor:
        return (targets - self.mean) / self.std

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None):
        """``sum_i w_i d(z_i, (y_i - mean) / std) / sum_i w_i``, ``d`` squared or absolute difference."""
        return weighted_mean(self.row_losses(outputs, targets), weights)

    def row_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` each row's squared or absolute difference, in standardised units (the mean over
        the targets when there are several)."""
        if self.n_targets == 1:
            difference = outputs[:, 0] - self.standardise(targets.to(outputs.dtype))
        else:
            difference = outputs[:, : self.n_targets] - self.standardise(targets.to(outputs.dtype))
        losses = difference.pow(2) if self.loss_kind == "mse" else difference.abs()
        return losses if self.n_targets == 1 else losses.mean(1)

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Predicted values ``(batch, k)`` in the targets' units, within the clipping bounds."""
        values = outputs[:, : self.n_targets] * self.std + self.mean
        if self.margin is None:
            return values
        return torch.minimum(torch.maximum(values, self.low), self.high)


def regression_metrics(predicted: np.ndarray, targets: np.ndarray) -> dict[str, float | None]:
    """MAE, RMSE, Pearson correlation and R^2 of ``predicted`` against ``targets`` (rows with a target);
    ``None`` each when no row has one. With several targets (``(N, k)``), each metric's mean over the
    targets (scikit-learn's ``multioutput='uniform_average'``; ``None`` where a target has none)."""
    if np.ndim(targets) == 2:
        predicted = np.asarray(predicted).reshape(targets.shape)
        each = [regression_metrics(predicted[:, j], targets[:, j]) for j in range(targets.shape[1])]
        return {
            name: None if any(m[name] is None for m in each) else float(np.mean([m[name] for m in each]))
            for name in each[0]
        }
    known = ~np.isnan(targets)
    if not known.any():
        return {"mae": None, "rmse": None, "corr": None, "r2": None}
    p, y = np.asarray(predicted, dtype=np.float64).reshape(-1)[known], targets[known].astype(np.float64)
    error = p - y
    spread = ((y - y.mean()) ** 2).sum()
    corr = float(np.corrcoef(p, y)[0, 1]) if len(y) > 1 and p.std() > 0 and y.std() > 0 else None
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "corr": corr,
        "r2": float(1 - (error**2).sum() / spread) if spread > 0 else None,
    }


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Balanced accuracy and macro F1 of the most probable class, over the rows with a label (``>= 0``);
    ``None`` each when no row has one. What accuracy hides when the classes are unbalanced (a model that
    always answers a 90% class has accuracy 0.9).

    Balanced accuracy is the mean recall over the classes present in the labels; macro F1 the mean over
    the classes that are labels or predictions of ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)`` (scikit-learn's
    ``balanced_accuracy_score`` and ``f1_score(average="macro")``).
    """
    from crossfuse.evaluation.warnings import balanced_accuracy

    known = labels >= 0
    if not known.any():
        return {"balanced_accuracy": None, "macro_f1": None}
    predicted, truth = probabilities[known].argmax(1), labels[known]
    scores = []
    for c in np.union1d(truth, predicted):
        true_positive = np.sum((predicted == c) & (truth == c))
        wrong = np.sum((predicted == c) != (truth == c))
        scores.append(2 * true_positive / (2 * true_positive + wrong))
    return {"balanced_accuracy": balanced_accuracy(predicted, truth)[0], "macro_f1": float(np.mean(scores))}
