"""The contract every transfer method implements, and the source-only baseline.

A training step sees a labelled source batch and an unlabelled target batch. The base class runs the
model on both and returns ``L = sum_i w_i CE(f(x_i^s), y_i^s) / sum_i w_i + alignment_loss(...)``;
a method overrides one hook:

- :meth:`TransferMethod.alignment_loss` for a loss on features (CORAL, MMD, DANN);
- :meth:`TransferMethod.source_weights` for instance weights (importance weighting);
- :meth:`TransferMethod.training_loss` for anything else (mixup).

Alignment acts on the spaces named by ``align``: ``'fused'`` (the fused representation),
``'modalities'`` (each modality's encoded features) or ``'both'``. Each method's default comes from
``benchmarks/alignment_space.py`` (AV-Digits, late fusion, 3 seeds): DANN ``both`` (92.8% against 91.7%
fused, and 95.6% against 80.8% on two moons), CORAL and MMD ``fused`` (94.6% and 97.8%; ``both`` gave
94.8% and 88.8%).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.model import MultimodalModel
from crossfuse.parallel import current_shard, global_sum

ALIGN_CHOICES = ("fused", "modalities", "both")


@dataclass
class StepOutputs:
    """What the model produced for one source and one target batch."""

    source_features: dict[str, torch.Tensor]
    target_features: dict[str, torch.Tensor]
    source_fused: torch.Tensor
    target_fused: torch.Tensor
    source_logits: torch.Tensor
    target_logits: torch.Tensor

    def aligned_pairs(self, align: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``space -> (source, target)`` features for the spaces that ``align`` names."""
        pairs = {}
        if align in ("modalities", "both"):
            for m in sorted(self.source_features):
                pairs[m] = (self.source_features[m], self.target_features[m])
        if align in ("fused", "both"):
            pairs["fused"] = (self.source_fused, self.target_fused)
        return pairs


def run_model(model: MultimodalModel, source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]):
    """One forward pass over the concatenated batches (so batch-norm-free models see both at once)."""
    n_source = next(iter(source.values())).shape[0]
    joined = {m: torch.cat([source[m], target[m]]) for m in sorted(source)}
    features = model.encode(joined)
    fused = model.fuse(features)
    logits = model.head(fused)
    return StepOutputs(
        {m: f[:n_source] for m, f in features.items()},
        {m: f[n_source:] for m, f in features.items()},
        fused[:n_source],
        fused[n_source:],
        logits[:n_source],
        logits[n_source:],
    )


class TransferMethod(nn.Module):
    """Base class; as it stands it is the source-only baseline (target batches are ignored).

    Parameters
    ----------
    align
        Where an alignment loss acts: ``'fused'``, ``'modalities'`` or ``'both'``.
    weight
        Multiplier of the alignment loss.
    """

    name = "source-only"
    uses_target = False

    def __init__(self, align: str = "fused", weight: float = 1.0) -> None:
        super().__init__()
        if align not in ALIGN_CHOICES:
            raise ConfigError(f"align {align!r}: choose from {', '.join(ALIGN_CHOICES)}")
        self.align, self.weight = align, weight

    def setup(self, model: MultimodalModel, feature_dims: Mapping[str, int]) -> None:
        """Build any parameters that depend on the model's feature sizes (``space -> dim``)."""

    def source_weights(self, source: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """Per-sample weights of the source loss, or ``None`` for uniform."""
        return None

    def alignment_loss(self, outputs: StepOutputs, progress: float) -> torch.Tensor:
        """Loss added to the classification loss; ``progress`` runs from 0 to 1 over training."""
        return outputs.source_logits.new_zeros(())

    def training_loss(
        self,
        model: MultimodalModel,
        source: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        target: Mapping[str, torch.Tensor],
        progress: float,
    ) -> torch.Tensor:
        if not self.uses_target:
            logits = model(source)
            return weighted_cross_entropy(logits, labels, self.source_weights(source))
        outputs = run_model(model, source, target)
        loss = weighted_cross_entropy(outputs.source_logits, labels, self.source_weights(source))
        return loss + self.weight * self.alignment_loss(outputs, progress)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None):
    """``sum_i w_i CE_i / sum_i w_i`` (plain mean when ``weights`` is ``None``).

    Over a batch split across ``w`` processes each returns ``w sum_{i in shard} w_i CE_i / sum_i w_i``
    (the denominator over the global batch), whose average over processes is the global loss.
    """
    if weights is None:
        return F.cross_entropy(logits, labels)
    losses = F.cross_entropy(logits, labels, reduction="none")
    world = current_shard()[1]
    return (weights * losses).sum() * world / global_sum(weights).clamp_min(1e-12)


class SourceOnly(TransferMethod):
    """Train on labelled source data only: the baseline every transfer method is measured against."""
