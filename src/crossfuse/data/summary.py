"""What a run trains on, in two lines at its start: the rows of each role, the classes' shares on the
source, and how each modality is scaled. On a user's own folder this is the first place to see what
``--normalization auto`` chose or that one class fills the source, before any number is read."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from crossfuse.data.dataset import MultimodalDataset, TaskSplit

#: At most this many classes are named with their shares; the rest are counted.
NAMED_CLASSES = 4

SCALES = {
    "feature": {1: "per-feature scales", 2: "scales per frame feature", 3: "scales per channel"},
    "global": {1: "one scale for all its features"},
    "quantile": {1: "each feature mapped through its training quantiles to a normal"},
    "none": {1: "not scaled"},
}


def rows_line(dataset: MultimodalDataset, split: TaskSplit) -> str:
    """``data: N source rows to train on (M for validation), ... ; K classes (source: a 91%, b 9%)``."""
    parts = [f"{len(split.source_train)} source rows to train on ({len(split.source_val)} for validation)"]
    if len(split.target_train):
        parts.append(f"{len(split.target_train)} unlabelled target rows")
    parts.append(f"{len(split.target_test)} target rows to score")
    line = "data: " + ", ".join(parts)
    if dataset.objective != "classification":
        return line + f"; a regression of {dataset.n_targets} target(s)"
    labels = dataset.labels[np.concatenate([split.source_train, split.source_val])]
    labels = labels[labels >= 0]
    counts = np.bincount(labels, minlength=dataset.n_classes)
    order = np.argsort(-counts, kind="stable")
    names = dataset.classes
    shares = [f"{names[k]} {100 * counts[k] / counts.sum():.0f}%" for k in order[:NAMED_CLASSES]]
    if len(order) > NAMED_CLASSES:
        shares.append(f"{len(order) - NAMED_CLASSES} more")
    return line + f"; {dataset.n_classes} classes (source: {', '.join(shares)})"


def read_as(shape: tuple[int, ...]) -> str:
    """How a sample of ``shape`` is read, as its encoder reads it."""
    if len(shape) == 1:
        return f"a vector of {shape[0]} features"
    if len(shape) == 2:  # (N, 28, 28) grey images are read this way too: the line is where that shows
        return f"a sequence of {shape[0]} frames x {shape[1]} features"
    if len(shape) == 3:
        return f"an image of {shape[0]} channel(s), {shape[1]}x{shape[2]}"
    return "x".join(map(str, shape))


def scaling_line(shapes: Mapping[str, tuple[int, ...]], kinds: Mapping[str, str], mode: str) -> str:
    """``inputs: x (a vector of 7 features) per-feature scales; ...``: how each modality is read (its
    encoder follows: a vector, a sequence or an image) and the scaling fitted for it, with the mode that
    chose it where that differs from the mode (``auto``, ``domain``; ``quantile`` scales a sequence or an
    image per feature)."""
    described = []
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        size = read_as(shape)
        kind = kinds.get(name, "none")
        scale = SCALES.get(kind, {}).get(len(shape)) or SCALES.get(kind, {}).get(1, kind)
        described.append(f"{name} ({size}) {scale}")
    chosen = mode in ("auto", "domain") or (
        mode == "quantile" and any(kinds.get(name) != "quantile" for name in shapes)
    )
    chosen_by = f" (chosen by --normalization {mode})" if chosen else ""
    return "inputs: " + "; ".join(described) + chosen_by
