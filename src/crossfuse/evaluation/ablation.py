"""Per-modality ablation: what the model loses when one modality is missing at test time."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from crossfuse.model import MultimodalModel
from crossfuse.normalize import Standardize
from crossfuse.train.loop import accuracy, predict


def modality_ablation(
    model: MultimodalModel, inputs: dict[str, np.ndarray], labels: np.ndarray, measure: Callable = accuracy
) -> dict:
    """Target accuracy (or ``measure``) with each modality removed at test time (set to its
    source-training mean, the input that the model's standardisation maps to zero)."""
    if len(inputs) < 2:
        return {}
    result = {}
    for m, normalizer in model.normalizers.items():
        if not isinstance(normalizer, Standardize):
            continue
        removed = dict(inputs)
        removed[m] = np.broadcast_to(normalizer.mean.cpu().numpy(), inputs[m].shape).astype(np.float32)
        result[m] = round(measure(predict(model, removed)[0], labels), 4)
    return result
