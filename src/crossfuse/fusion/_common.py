"""What the fusion modules share: their base class and the checks of their inputs."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

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


class FusionModule(nn.Module):
    """Base of the fusion modules: ``Cls(input_dims, output_dim, **options)``, called on a
    ``dict[str, Tensor]`` of ``(batch, d_m)`` features.

    Attributes a model builder reads: ``uses_encoders`` (``False``: the module takes the flattened raw
    inputs, as early fusion does), :meth:`preferred_input_dim` (the size each encoder should give it) and
    :meth:`penalty` (a regulariser added to the loss; zero unless overridden).
    """

    uses_encoders = True

    @classmethod
    def preferred_input_dim(cls, hidden_dim: int, n_modalities: int) -> int:
        """The encoding size for each of ``n_modalities`` modalities, given the model's ``hidden_dim``."""
        return hidden_dim

    def penalty(self) -> torch.Tensor:
        """A term for the training loss; zero here."""
        reference = next(self.parameters(), None)
        return torch.zeros((), device=reference.device if reference is not None else None)
