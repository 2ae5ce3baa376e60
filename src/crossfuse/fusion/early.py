from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from crossfuse.fusion._common import FusionModule, ordered_features, sorted_dims
from crossfuse.parallel.dropout import ShardDropout
from crossfuse.registry import FUSIONS


@FUSIONS.register("early")
class EarlyFusion(FusionModule):
    """Early (feature-level) fusion: concatenate the modalities, then one network.

    ``y = W_2 ReLU(W_1 [x_1; ...; x_M] + b_1) + b_2`` with modalities in sorted key order. In a
    :class:`~crossfuse.model.MultimodalModel` it receives the flattened raw inputs (no per-modality
    encoder), which is what makes it *early*. With ``output_dim=None`` it returns the concatenation.

    Parameters
    ----------
    input_dims
        Feature size of each modality.
    output_dim
        Size of the output, or ``None`` for the bare concatenation.
    hidden_dim
        Width of the hidden layer.
    dropout
        Dropout rate on the hidden layer.
    """

    uses_encoders = False

    def __init__(
        self,
        input_dims: Mapping[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.input_dims = sorted_dims(input_dims)
        total = sum(self.input_dims.values())
        self.output_dim = total if output_dim is None else output_dim
        self.net = (
            nn.Identity()
            if output_dim is None
            else nn.Sequential(
                nn.Linear(total, hidden_dim),
                nn.ReLU(),
                ShardDropout(dropout),
                nn.Linear(hidden_dim, output_dim),
            )
        )

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.net(torch.cat(ordered_features(features, self.input_dims), dim=-1))
