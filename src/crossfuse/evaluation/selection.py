"""Label-free model selection: scores computed without target labels, higher is better.

- ``source-val``: accuracy on held-out labelled source data. The training loop keeps the latest epoch
  whose accuracy is within one standard error of the best (:func:`selection_tolerance`).
- ``iwv``: importance-weighted validation accuracy ``sum_i w_i 1[correct_i] / sum_i w_i`` on the source
  validation set, ``w = p_t / p_s`` (Sugiyama, Krauledat & Müller, JMLR 2007).
- ``dev``: deep embedded validation (You et al., ICML 2019): minus the control-variate estimate of the
  target risk, ``mean(L) + eta mean(w) - eta`` with ``L_i = w_i l_i`` (``l_i`` the cross-entropy) and
  ``eta = -Cov(L, w) / Var(w)``. We estimate ``w`` on the inputs, once per run, rather than on each
  candidate's features, which keeps selection cheap and the weights the same for every candidate.
- ``entropy``: minus the mean Shannon entropy of the predictions on unlabelled target data
  (Morerio et al., ICLR 2018).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

SELECTION_CRITERIA = ("source-val", "iwv", "dev", "entropy")
NEEDS_WEIGHTS = ("iwv", "dev")


def selection_tolerance(criterion: str, best: float, n_validation: int) -> float:
    """How far below the best score an epoch may fall and still be chosen (the latest such epoch is).

    For ``source-val``, one standard error of the best accuracy: the one-standard-error rule (Breiman et
    al., *Classification and Regression Trees*, 1984; Hastie, Tibshirani & Friedman, *The Elements of
    Statistical Learning*, section 7.10), which prefers the later, longer-adapted model among those the
    validation set cannot tell apart. With ``k = best n`` correct out of ``n``, the Agresti-Coull estimate
    ``p~ = (k + 2) / (n + 4)`` keeps the error above zero at 100% accuracy:
    ``SE = sqrt(p~ (1 - p~) / (n + 4))`` (1.4 samples out of 300 at 100%, 5 at 90%).

    Without it, an epoch one validation sample luckier than the rest is chosen: DANN's label-free pick on
    AV-Digits (seed 0) moved by 6.4 target points when only the rounding changed (2 threads instead of 1),
    by 1.1 with it. The other criteria have no such simple error and keep 0 (ties still go to the later
    epoch).
    """
    if criterion != "source-val" or n_validation <= 0:
        return 0.0
    p = (best * n_validation + 2) / (n_validation + 4)
    return math.sqrt(p * (1 - p) / (n_validation + 4))


def mean_entropy(probabilities: np.ndarray) -> float:
    """``mean_i -sum_c p_ic log p_ic``."""
    p = np.clip(probabilities, 1e-12, 1.0)
    return float(-(p * np.log(p)).sum(1).mean())


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """Deep embedded validation risk ``mean(w l) + eta mean(w) - eta``, ``eta = -Cov(w l, w) / Var(w)``."""
    weighted = weights * losses
    variance = weights.var(ddof=1) if len(weights) > 1 else 0.0
    eta = -np.cov(weighted, weights, ddof=1)[0, 1] / variance if variance > 0 else 0.0
    return float(weighted.mean() + eta * weights.mean() - eta)


def selection_scores(
    model,
    source_val: tuple[Mapping[str, np.ndarray], np.ndarray],
    target: Mapping[str, np.ndarray],
    predict: Callable,
    val_weights: np.ndarray | None = None,
    with_entropy: bool = True,
) -> dict[str, float]:
    """The criteria of :data:`SELECTION_CRITERIA` (``iwv``/``dev`` only with ``val_weights``; ``entropy``,
    which needs a pass over the target data, only ``with_entropy``)."""
    val_probabilities, _ = predict(model, source_val[0])
    val_labels = source_val[1]
    correct = (val_probabilities.argmax(1) == val_labels).astype(np.float64)
    losses = -np.log(np.clip(val_probabilities[np.arange(len(val_labels)), val_labels], 1e-12, 1))
    scores = {
        "source-val": float(correct.mean()),
        "source_val_accuracy": float(correct.mean()),
    }
    if with_entropy:
        scores["entropy"] = -mean_entropy(predict(model, target)[0])
    if val_weights is not None:
        scores["iwv"] = float((val_weights * correct).sum() / val_weights.sum())
        scores["dev"] = -dev_risk(losses, val_weights)
    return scores
