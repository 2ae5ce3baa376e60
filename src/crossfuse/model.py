"""A multimodal classifier: one encoder per modality, a fusion module, a classification head."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from crossfuse.encoders import encoder_for
from crossfuse.errors import ConfigError
from crossfuse.fusion import FUSIONS
from crossfuse.normalize import Standardize
from crossfuse.parallel.dropout import ShardDropout


class MultimodalModel(nn.Module):
    """``logits = head(fusion({m: encoder_m(x_m)}))``.

    Early fusion gets the flattened raw inputs (no encoders); every other fusion gets the encoders'
    features. Decision-level late fusion outputs the logits itself, so its head is the identity.
    Transfer methods see the per-modality features (:meth:`encode`) and the fused representation
    (:meth:`fuse`) and never the modules' internals.

    Parameters
    ----------
    sample_shapes
        Shape of one sample of each modality (without the batch axis).
    n_classes
        Number of classes.
    fusion
        A key of :data:`crossfuse.fusion.FUSIONS`.
    hidden_dim
        Size of each encoder's output and of the fused representation.
    fusion_options
        Extra keyword arguments for the fusion module (e.g. ``rank`` for ``lmf``).
    normalization
        How each modality's inputs are standardised (:mod:`crossfuse.normalize`).
    """

    def __init__(
        self,
        sample_shapes: Mapping[str, Sequence[int]],
        n_classes: int,
        fusion: str = "late",
        hidden_dim: int = 64,
        dropout: float = 0.1,
        fusion_options: Mapping[str, Any] | None = None,
        normalization: str = "auto",
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ConfigError(f"fusion {fusion!r}: unknown (choose from {', '.join(FUSIONS)})")
        options = dict(fusion_options or {})
        names = sorted(sample_shapes)
        fusion_cls = FUSIONS[fusion]
        self.fusion_name = fusion
        self.normalizers = nn.ModuleDict(
            {m: Standardize(tuple(sample_shapes[m]), normalization) for m in names}
        )
        if not getattr(fusion_cls, "uses_encoders", True):
            options.setdefault("dropout", dropout)
            self.encoders = nn.ModuleDict({m: nn.Flatten() for m in names})
            input_dims = {m: math.prod(sample_shapes[m]) for m in names}
        else:
            encoder_dim = hidden_dim
            if fusion == "tfn":
                # Keep prod(d_m + 1) * hidden_dim near 2**20 weights so TFN stays trainable on a CPU.
                budget = (2**20 / hidden_dim) ** (1 / len(names))
                encoder_dim = max(4, min(hidden_dim, int(budget) - 1))
            self.encoders = nn.ModuleDict(
                {m: encoder_for(m, sample_shapes[m], encoder_dim, dropout) for m in names}
            )
            input_dims = {m: encoder_dim for m in names}
        self.decision_level = fusion == "late" and options.get("mode") == "decision"
        fused_dim = n_classes if self.decision_level else hidden_dim
        self.fusion = fusion_cls(input_dims, fused_dim, **options)
        self.head = (
            nn.Identity()
            if self.decision_level
            else nn.Sequential(nn.ReLU(), ShardDropout(dropout), nn.Linear(hidden_dim, n_classes))
        )

    def encode(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-modality features ``{m: (batch, d_m)}``."""
        return {m: self.encoders[m](self.normalizers[m](inputs[m])) for m in sorted(self.encoders)}

    def fit_normalizers(self, inputs: Mapping[str, Any]) -> None:
        """Fit each modality's input standardisation on training rows (numpy arrays)."""
        for m, normalizer in self.normalizers.items():
            normalizer.fit(inputs[m])

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fusion(features)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.fuse(self.encode(inputs)))

    def penalty(self) -> torch.Tensor:
        """The fusion's regulariser for the loss (the nuclear norm), or 0."""
        penalty = getattr(self.fusion, "penalty", None)
        return penalty() if penalty is not None else self._zero_on_device()

    def _zero_on_device(self) -> torch.Tensor:
        return torch.zeros((), device=next(self.parameters()).device)
