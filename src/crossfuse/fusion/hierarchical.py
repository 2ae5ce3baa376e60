from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import torch
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.fusion._common import FusionModule, ordered_features, sorted_dims
from crossfuse.registry import FUSIONS


@FUSIONS.register("hierarchical")
class HierarchicalFusion(FusionModule):
    """Hierarchical fusion: unimodal, then every pair, then all modalities together.

    Follows the bimodal-then-trimodal scheme of Majumder et al., "Multimodal sentiment analysis using
    hierarchical fusion with context modeling" (Knowledge-Based Systems 161, 2018), generalised to M
    modalities, because it captures interactions of different granularity from the features alone (no
    access to encoder internals, as the fusion contract requires):

    - level 1: ``u_m = ReLU(U_m z_m + c_m)`` for each modality;
    - level 2: ``p_mn = ReLU(P_mn [u_m; u_n] + d_mn)`` for each pair ``m < n`` (sorted order);
    - level 3: ``y = W [u_1; ...; u_M; p_12; ...] + b``.

    With one modality, level 2 is empty.

    Parameters
    ----------
    input_dims
        Feature size of each modality.
    output_dim
        Size of the output.
    hidden_dim
        Width of the unimodal and pairwise representations.
    """

    def __init__(self, input_dims: Mapping[str, int], output_dim: int | None, hidden_dim: int = 64) -> None:
        super().__init__()
        self.input_dims = sorted_dims(input_dims)
        if output_dim is None:
            raise ConfigError("HierarchicalFusion needs an integer output_dim")
        self.output_dim = output_dim
        self.unimodal = nn.ModuleList(
            nn.Sequential(nn.Linear(size, hidden_dim), nn.ReLU()) for size in self.input_dims.values()
        )
        self.pairs = list(combinations(range(len(self.input_dims)), 2))
        self.pairwise = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.ReLU()) for _ in self.pairs
        )
        self.joint = nn.Linear(hidden_dim * (len(self.input_dims) + len(self.pairs)), output_dim)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ordered = ordered_features(features, self.input_dims)
        unimodal = [layer(z) for layer, z in zip(self.unimodal, ordered, strict=True)]
        pairwise = [
            layer(torch.cat([unimodal[i], unimodal[j]], dim=-1))
            for layer, (i, j) in zip(self.pairwise, self.pairs, strict=True)
        ]
        return self.joint(torch.cat(unimodal + pairwise, dim=-1))
