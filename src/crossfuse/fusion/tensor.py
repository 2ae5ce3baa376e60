from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.fusion._common import FusionModule, ordered_features, sorted_dims
from crossfuse.registry import FUSIONS

#: Largest weight TensorFusion builds by default (elements; 2**28 float32 = 1 GiB).
MAX_WEIGHT_ELEMENTS = 2**28


@FUSIONS.register("tfn")
class TensorFusion(FusionModule):
    """Tensor Fusion Network layer (Zadeh et al., "Tensor Fusion Network for Multimodal Sentiment
    Analysis", EMNLP 2017).

    ``Z = [1; z_1] ⊗ [1; z_2] ⊗ ... ⊗ [1; z_M]`` over modalities in sorted key order, the constant 1 first
    in each factor so that unimodal and lower-order terms survive the product, flattened in row-major
    order to length ``prod_m (d_m + 1)``. With an integer ``output_dim`` the layer returns
    ``y = W vec(Z) + b``; with ``None`` it returns ``vec(Z)``.

    The size grows as ``prod_m (d_m + 1)``: a weight of more than ``max_weight_elements`` is refused with
    the sizes named (use :class:`~crossfuse.fusion.LowRankFusion`, whose cost is linear in M).
    """

    @classmethod
    def preferred_input_dim(cls, hidden_dim: int, n_modalities: int) -> int:
        """Encodings small enough that ``prod(d_m + 1) * hidden_dim`` stays near ``2**20`` weights, so a
        TFN over several modalities still trains on a CPU (at least 4, at most ``hidden_dim``)."""
        budget = (2**20 / hidden_dim) ** (1 / n_modalities)
        return max(4, min(hidden_dim, int(budget) - 1))

    def __init__(
        self,
        input_dims: Mapping[str, int],
        output_dim: int | None = None,
        max_weight_elements: int = MAX_WEIGHT_ELEMENTS,
    ) -> None:
        super().__init__()
        self.input_dims = sorted_dims(input_dims)
        self.tensor_size = math.prod(d + 1 for d in self.input_dims.values())
        self.output_dim = self.tensor_size if output_dim is None else output_dim
        self.linear = None
        if output_dim is not None:
            weights = self.tensor_size * output_dim
            if weights > max_weight_elements:
                sizes = " x ".join(f"({d} + 1)" for d in self.input_dims.values())
                raise ConfigError(
                    f"TensorFusion: {sizes} = {self.tensor_size} fused inputs x output_dim {output_dim} = "
                    f"{weights:,} weights ({weights * 4 / 2**30:.1f} GiB in float32) exceeds the limit of "
                    f"{max_weight_elements:,}; use LowRankFusion (fusion 'lmf') or smaller modality features"
                )
            self.linear = nn.Linear(self.tensor_size, output_dim)

    def fused_tensor(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``vec(Z)``, shape ``(batch, prod_m (d_m + 1))``."""
        ordered = ordered_features(features, self.input_dims)
        batch = ordered[0].shape[0]
        product = None
        for z in ordered:
            augmented = torch.cat([z.new_ones(batch, 1), z], dim=-1)
            product = (
                augmented if product is None else (product[:, :, None] * augmented[:, None, :]).flatten(1)
            )
        return product

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        fused = self.fused_tensor(features)
        return fused if self.linear is None else self.linear(fused)
