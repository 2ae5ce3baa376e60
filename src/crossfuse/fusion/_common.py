"""Checks shared by the fusion modules."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from crossfuse.errors import ConfigError


def sorted_dims(input_dims: Mapping[str, int]) -> dict[str, int]:
    """``input_dims`` in sorted key order, validated: at least one modality, positive sizes."""
    if not input_dims:
        raise ConfigError("fusion needs at least one modality")
    dims = {}
    for name in sorted(input_dims):
        size = int(input_dims[name])
        if size < 1:
            raise ConfigError(f"modality {name!r}: feature size must be positive, got {size}")
        dims[name] = size
    return dims


def ordered_features(features: Mapping[str, torch.Tensor], dims: Mapping[str, int]) -> list[torch.Tensor]:
    """The feature tensors in the module's (sorted) modality order, checked against ``dims``."""
    missing = set(dims) - set(features)
    if missing:
        raise ConfigError(f"fusion input lacks modalities {sorted(missing)} (has {sorted(features)})")
    ordered = []
    for name, size in dims.items():
        tensor = features[name]
        if tensor.dim() != 2 or tensor.shape[1] != size:
            raise ConfigError(
                f"modality {name!r}: expected features (batch, {size}), got {tuple(tensor.shape)}"
            )
        ordered.append(tensor)
    return ordered
