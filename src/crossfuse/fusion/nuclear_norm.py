from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.fusion._common import FusionModule, ordered_features, sorted_dims
from crossfuse.registry import FUSIONS


@FUSIONS.register("nuclear")
class NuclearNormFusion(FusionModule):
    """The seed document's "LMF" (its sections 3.1.2 and 4.2): a sum of per-modality linear maps with a
    nuclear-norm penalty on each map.

    ``y = sum_m W_m z_m + b`` and ``penalty() = lambda * sum_m ||W_m||_*``, where ``||W||_*`` is the sum of
    singular values (the convex surrogate of rank, so the penalty pushes each map toward low rank). The
    training loop adds ``penalty()`` to the loss. This is *not* Liu et al.'s LMF
    (:class:`~crossfuse.fusion.LowRankFusion`); it is kept under its own name.

    Parameters
    ----------
    input_dims
        Feature size of each modality.
    output_dim
        Size of ``y``.
    penalty_weight
        ``lambda``.
    """

    def __init__(self, input_dims: Mapping[str, int], output_dim: int | None, penalty_weight: float = 1e-3):
        super().__init__()
        self.input_dims = sorted_dims(input_dims)
        if output_dim is None:
            raise ConfigError("NuclearNormFusion needs an integer output_dim")
        if penalty_weight < 0:
            raise ConfigError(f"NuclearNormFusion penalty_weight must be >= 0, got {penalty_weight}")
        self.output_dim, self.penalty_weight = output_dim, penalty_weight
        self.maps = nn.ModuleList(
            nn.Linear(size, output_dim, bias=False) for size in self.input_dims.values()
        )
        self.bias = nn.Parameter(torch.zeros(output_dim))

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ordered = ordered_features(features, self.input_dims)
        return sum(layer(z) for layer, z in zip(self.maps, ordered, strict=True)) + self.bias

    def penalty(self) -> torch.Tensor:
        """``lambda * sum_m ||W_m||_*``."""
        norms = [torch.linalg.matrix_norm(layer.weight, ord="nuc") for layer in self.maps]
        return self.penalty_weight * torch.stack(norms).sum()
