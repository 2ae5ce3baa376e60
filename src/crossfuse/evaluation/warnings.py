"""Flags on a finished run whose numbers should not be trusted."""

from __future__ import annotations

import math

import numpy as np

from crossfuse.train.divergence import divergence_ratio


def chance_level(labels: np.ndarray) -> float:
    """Accuracy of always answering the most frequent class of ``labels``."""
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0


def balanced_accuracy(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean over the classes present in ``labels`` (``>= 0``) of the share of that class's rows
    predicted as it (its recall), and the classes' row counts."""
    known = labels >= 0
    predicted, labels = predicted[known], labels[known]
    classes, counts = np.unique(labels, return_counts=True)
    recalls = [float((predicted[labels == c] == c).mean()) for c in classes]
    return float(np.mean(recalls)) if recalls else 0.0, counts


def run_warnings(history: list[dict], val_outputs: np.ndarray, val_labels: np.ndarray) -> list[str]:
    """What makes a finished classifier's numbers untrustworthy: a model at chance on its own source, or
    a training loss that exploded or never fell.

    Chance is judged on the kept epoch's source-validation outputs ``val_outputs`` ``(N, C)`` by their
    balanced accuracy ``b`` (the mean of the per-class recalls over the ``K`` classes present), which is
    exactly ``1 / K`` for a model that answers the same class for every row, or answers at random, however
    unbalanced the classes are. "Near chance" is ``b <= 1 / K + max(0.1 (1 - 1 / K), 2 SE)``, with
    ``SE = sqrt(sum_k p (1 - p) / n_k) / K``, ``p = 1 / K``, the spread of ``b`` for a random answer on
    classes of ``n_k`` rows: within a tenth of the way from chance to perfect, or within two standard
    errors of chance, which a small validation set cannot tell apart from it (the flag then says so, with
    the row counts, rather than that the model learnt nothing). (Plain accuracy against the
    most frequent class's share called a perfect model "near chance" when one class had 94% of the rows.)
    A validation set of one class says nothing about chance: no flag.
    """
    warnings = []
    score, counts = balanced_accuracy(val_outputs.argmax(1), val_labels)
    k = len(counts)
    if k >= 2:
        chance = 1 / k
        error = math.sqrt(float((chance * (1 - chance) / counts).sum())) / k
        stated = f"source-validation balanced accuracy {score:.3f} (the mean of the per-class accuracies)"
        if score <= chance + 0.1 * (1 - chance):
            warnings.append(
                f"{stated} is near chance ({chance:.3f} for {k} classes): the model did not learn the "
                "source task; do not trust its target accuracy"
            )
        elif score <= chance + 2 * error:  # above chance, but on too few rows to tell
            warnings.append(
                f"{stated} cannot be told from chance ({chance:.3f} for {k} classes) on "
                f"{int(counts.sum())} validation rows (the smallest class has {int(counts.min())}): the "
                "model may not have learnt the source task; do not trust its target accuracy"
            )
    return warnings + loss_warnings(history)


def loss_warnings(history: list[dict]) -> list[str]:
    """A training loss that exploded (ten times its first epoch's) or never fell below it. A loss that fell
    and then rose is not flagged: a method whose alignment weight ramps in over the run (DANN's warm-up,
    mixup's) raises its total loss while the source is learnt."""
    warnings = []
    losses = [r["train_loss"] for r in history]
    if len(losses) > 1 and max(losses[1:]) > 10 * losses[0]:
        stopped = f"; training stopped at epoch {len(losses)}" if divergence_ratio(losses) else ""
        warnings.append(
            f"the training loss exploded (epoch 1: {losses[0]:.3g}, largest: {max(losses):.3g}{stopped}); "
            "try a lower --lr or a smaller alignment weight"
        )
    elif len(losses) > 1 and min(losses[1:]) >= losses[0]:
        warnings.append(
            f"the training loss did not fall ({losses[0]:.3g} in epoch 1, never lower; "
            f"{losses[-1]:.3g} at the end)"
        )
    return warnings


def regression_warnings(history: list[dict], chosen: dict, baseline_mae: float) -> list[str]:
    """A regression's flags: a source-validation error no better than predicting the source mean (within
    5% of that baseline's error), or a training loss that exploded or never fell."""
    warnings = []
    error = chosen["source_val_mae"]
    if error >= 0.95 * baseline_mae:
        warnings.append(
            f"source-validation MAE {error:.4g} is no better than predicting the source mean "
            f"({baseline_mae:.4g}): the model did not learn the source task; do not trust its target error"
        )
    return warnings + loss_warnings(history)


def collapse_limit(source_share: float) -> float:
    """The largest share of one class in a target that is not read as a collapse (see
    :func:`collapse_warnings`), given ``source_share``, the source's most frequent class share."""
    return min(max(0.9, (1 + source_share) / 2), max(3 * source_share, source_share + 0.25))


def collapse_warnings(target_probabilities: np.ndarray, source_labels: np.ndarray) -> list[str]:
    """A classifier whose predictions on the unlabelled target pile into one class: the share of its most
    predicted class is above ``min(max(0.9, (1 + s) / 2), max(3 s, s + 0.25))``, ``s`` the source's most
    frequent class share: at most 90%, except for a source already that lopsided, whose limit is halfway
    from ``s`` to all rows (95% for ``s`` = 90%; a model that keeps a 90/10 source's prior predicts about
    90% of the target in one class, and is not collapsed). Label-free, so it also catches a model that
    learnt the source and then collapsed on the target (self-training on its own pseudo-labels), which the
    source-validation flags cannot see."""
    if len(target_probabilities) == 0 or len(source_labels) == 0:
        return []
    classes = target_probabilities.shape[1]
    share = float(
        np.bincount(target_probabilities.argmax(1), minlength=classes).max() / len(target_probabilities)
    )
    source_share = chance_level(source_labels)
    limit = collapse_limit(source_share)
    if share <= limit:
        return []
    return [
        f"{100 * share:.0f}% of the unlabelled target rows are predicted as one class (the source's most "
        f"frequent class is {100 * source_share:.0f}%): the model may have collapsed on the target"
    ]
