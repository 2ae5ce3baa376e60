from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.fusion._common import FusionModule, ordered_features, sorted_dims
from crossfuse.registry import FUSIONS


@FUSIONS.register("late")
class LateFusion(FusionModule):
    """Late fusion of per-modality encoded features, at feature or at decision level.

    ``mode='feature'``: ``y = W [z_1; ...; z_M] + b``, the encoders' outputs joined by one linear map.
    ``mode='decision'``: each modality predicts on its own, ``y_m = W_m z_m + b_m``, and the predictions
    are averaged, ``y = sum_m a_m y_m``, with ``a = softmax(v)`` learned (``weights='learned'``) or fixed
    (``weights`` a sequence, normalised to sum to 1, in sorted modality order; ``'uniform'`` = 1/M).

    Parameters
    ----------
    input_dims
        Feature size of each modality.
    output_dim
        Size of the output (the number of classes in decision mode).
    mode
        ``'feature'`` or ``'decision'``.
    weights
        ``'learned'``, ``'uniform'`` or a sequence of one weight per modality (decision mode only).
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        output_dim: int | None,
        mode: str = "feature",
        weights: str | Sequence[float] = "learned",
    ) -> None:
        super().__init__()
        self.input_dims = sorted_dims(input_dims)
        if output_dim is None:
            raise ConfigError("LateFusion needs an integer output_dim")
        if mode not in ("feature", "decision"):
            raise ConfigError(f"LateFusion mode {mode!r}: use 'feature' or 'decision'")
        self.mode = mode
        self.output_dim = output_dim
        if mode == "feature":
            self.joint = nn.Linear(sum(self.input_dims.values()), output_dim)
            return
        self.heads = nn.ModuleList(nn.Linear(size, output_dim) for size in self.input_dims.values())
        n = len(self.input_dims)
        if weights == "learned" and n > 1:  # one modality: softmax of one weight is constant
            self.weight_logits = nn.Parameter(torch.zeros(n))
        else:
            fixed = (
                torch.full((n,), 1.0 / n)
                if weights in ("uniform", "learned")
                else torch.as_tensor(weights, dtype=torch.float)
            )
            if fixed.shape != (n,) or (fixed < 0).any() or fixed.sum() <= 0:
                raise ConfigError(f"LateFusion weights {weights!r}: need {n} non-negative numbers, not all 0")
            self.register_buffer("fixed_weights", fixed / fixed.sum())

    def modality_weights(self) -> torch.Tensor:
        """The decision weights ``a`` (sorted modality order)."""
        if hasattr(self, "weight_logits"):
            return torch.softmax(self.weight_logits, dim=0)
        return self.fixed_weights

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ordered = ordered_features(features, self.input_dims)
        if self.mode == "feature":
            return self.joint(torch.cat(ordered, dim=-1))
        weights = self.modality_weights()
        return sum(w * head(z) for w, head, z in zip(weights, self.heads, ordered, strict=True))
