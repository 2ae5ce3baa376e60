"""Samples that lack a modality (every value of it NaN) and missing values (a NaN in part of a sample).

Real multimodal data often has holes (a patient without a scan, a clip without sound). Such a sample keeps
its other modalities; the model puts a learned placeholder in place of the missing one's encoding
(:class:`~crossfuse.model.MultimodalModel`), as modality dropout does. A missing value within a sample is
filled in with its feature's training mean (:class:`~crossfuse.normalize.Standardize`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def missing_rows(array: np.ndarray) -> np.ndarray:
    """``(N,)``: whether each sample of ``array`` (samples on the first axis) is missing, every value NaN."""
    if array.dtype.kind != "f" or len(array) == 0:
        return np.zeros(len(array), dtype=bool)
    return np.isnan(array.reshape(len(array), -1)).all(1)


def present_rows(array: np.ndarray) -> np.ndarray:
    """The samples of ``array`` that are not missing."""
    missing = missing_rows(array)
    return array[~missing] if missing.any() else array


def modalities_with_missing_rows(modalities: Mapping[str, np.ndarray]) -> list[str]:
    """The names, sorted, of the modalities that some sample lacks."""
    return sorted(m for m, array in modalities.items() if missing_rows(array).any())


def missing_values(modalities: Mapping[str, np.ndarray]) -> dict[str, tuple[int, int]]:
    """``modality -> (values missing, samples with some missing)``, counting the NaNs in samples that have
    the modality (a sample whose values are all NaN lacks it instead), for the modalities that have any."""
    counts = {}
    for m, array in sorted(modalities.items()):
        if array.dtype.kind != "f":
            continue
        unknown = np.isnan(array.reshape(len(array), -1))
        partial = unknown.any(1) & ~unknown.all(1)
        if partial.any():
            counts[m] = (int(unknown[partial].sum()), int(partial.sum()))
    return counts


def features_with_missing_values(
    modalities: Mapping[str, np.ndarray], rows: np.ndarray
) -> dict[str, list[int]]:
    """For each vector modality ``(N, d)``, the features that have a missing value (a NaN in part of a
    sample; a sample that lacks the whole modality aside) among ``rows``: the ones that get an indicator
    column (:class:`~crossfuse.normalize.Standardize`)."""
    found = {}
    for m, array in sorted(modalities.items()):
        if array.dtype.kind != "f" or array.ndim != 2:
            continue
        unknown = np.isnan(array[rows])
        partial = unknown.any(1) & ~unknown.all(1)
        features = np.flatnonzero(unknown[partial].any(0))
        if len(features):
            found[m] = features.tolist()
    return found
