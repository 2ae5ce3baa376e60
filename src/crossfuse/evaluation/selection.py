"""Label-free model selection: scores computed without target labels, higher is better.

- ``source-val``: accuracy on held-out labelled source data; ties (common once it saturates) are broken
  by the lower cross-entropy, which adds ``-1e-6 * CE`` (below one sample's worth of accuracy).
- ``entropy``: minus the mean Shannon entropy of the predictions on unlabelled target data
  (confident target predictions; Morerio et al., ICLR 2018, use it for selection).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

SELECTION_CRITERIA = ("source-val", "entropy")


def mean_entropy(probabilities: np.ndarray) -> float:
    """``mean_i -sum_c p_ic log p_ic``."""
    p = np.clip(probabilities, 1e-12, 1.0)
    return float(-(p * np.log(p)).sum(1).mean())


def selection_scores(
    model,
    source_val: tuple[Mapping[str, np.ndarray], np.ndarray],
    target: Mapping[str, np.ndarray],
    predict: Callable,
) -> dict[str, float]:
    """Every criterion of :data:`SELECTION_CRITERIA` for the model as it stands."""
    val_probabilities, _ = predict(model, source_val[0])
    target_probabilities, _ = predict(model, target)
    val_labels = source_val[1]
    val_accuracy = float((val_probabilities.argmax(1) == val_labels).mean())
    val_cross_entropy = float(
        -np.log(np.clip(val_probabilities[np.arange(len(val_labels)), val_labels], 1e-12, 1)).mean()
    )
    return {
        "source-val": val_accuracy - 1e-6 * val_cross_entropy,
        "source_val_accuracy": val_accuracy,
        "entropy": -mean_entropy(target_probabilities),
    }
