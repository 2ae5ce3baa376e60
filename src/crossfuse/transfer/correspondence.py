"""Modality-correspondence self-supervision with per-modality adversarial alignment (Munro & Damen,
"Multi-Modal Domain Adaptation for Fine-Grained Action Recognition", MM-SADA, CVPR 2020)."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.parallel import gather_shards
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import run_model
from crossfuse.transfer.dann import DANN, DomainClassifier


def correspondence_loss(
    classifier: nn.Module, first: torch.Tensor, second: torch.Tensor, shift: int
) -> torch.Tensor:
    """``(BCE(c([a_i; b_i]), 1) + BCE(c([a_i; b_{i+s}]), 0)) / 2`` averaged over the batch: the classifier
    tells a sample's two encodings from two samples' encodings, ``b`` rolled by ``shift`` (``0 < s < n``,
    so no row meets its own partner)."""
    matched = classifier(torch.cat([first, second], dim=1))
    shuffled = classifier(torch.cat([first, second.roll(shift, dims=0)], dim=1))
    positive = F.binary_cross_entropy_with_logits(matched, torch.ones_like(matched))
    negative = F.binary_cross_entropy_with_logits(shuffled, torch.zeros_like(shuffled))
    return (positive + negative) / 2


@TRANSFERS.register("correspondence")
class ModalityCorrespondence(DANN):
    """``L = L_y + weight * mean_m L_adv(f_m) + correspondence_weight * L_corr``.

    ``L_adv`` is DANN's adversarial loss on each modality's encoding (its own domain classifier per
    modality, gradient reversal with the warm-up). ``L_corr`` is self-supervised and needs no label: for
    every pair of modalities a small classifier learns whether two encodings come from the same sample
    (:func:`correspondence_loss`), on the source and on the target batch alike. Learning what the
    modalities share on the target shapes the target's encodings with a task that holds in both domains.

    It needs per-modality encoders and at least two modalities (early fusion has no encoding of one
    modality and is refused).

    Parameters
    ----------
    weight
        Multiplier of the adversarial loss.
    correspondence_weight
        Multiplier of ``L_corr``.
    gamma, hidden_dim
        As for :class:`~crossfuse.transfer.dann.DANN`.
    """

    min_modalities = 2

    supports_regression = True

    def __init__(
        self,
        weight: float = 1.0,
        correspondence_weight: float = 1.0,
        gamma: float = 10.0,
        hidden_dim: int = 64,
    ) -> None:
        super().__init__(align="modalities", weight=weight, gamma=gamma, hidden_dim=hidden_dim)
        self.correspondence_weight = correspondence_weight
        self.pairs: list[tuple[str, str]] = []
        self.pair_classifiers = nn.ModuleDict()

    def setup(self, model, feature_dims: Mapping[str, int]) -> None:
        from crossfuse.fusion import FusionModule

        if isinstance(model.fusion, FusionModule) and not model.fusion.uses_encoders:
            raise ConfigError("correspondence needs per-modality encoders; early fusion fuses the raw inputs")
        modalities = [m for m in sorted(feature_dims) if m != "fused"]
        if len(modalities) < 2:
            raise ConfigError("correspondence needs at least two modalities")
        super().setup(model, feature_dims)
        self.pairs = list(combinations(modalities, 2))
        self.pair_classifiers = nn.ModuleDict(
            {
                f"pair{i}": DomainClassifier(feature_dims[a] + feature_dims[b], self.hidden_dim)
                for i, (a, b) in enumerate(self.pairs)
            }
        )

    def correspondence(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``L_corr`` of one batch's encodings, averaged over the modality pairs. Under torchrun the pairs
        are rolled over the global batch (:func:`~crossfuse.parallel.gather_shards`), as one process rolls
        them: rolling each process's shard would pair other rows, with another shift."""
        features = {m: gather_shards(f) for m, f in features.items()}
        n = next(iter(features.values())).shape[0]
        shift = int(torch.randint(1, max(n, 2), ()).item())
        losses = []
        for i, (a, b) in enumerate(self.pairs):
            losses.append(
                correspondence_loss(self.pair_classifiers[f"pair{i}"], features[a], features[b], shift)
            )
        return torch.stack(losses).mean()

    def training_loss(self, model, source, labels, target, progress: float) -> torch.Tensor:
        outputs = run_model(model, source, target)
        source_loss = model.objective.loss(outputs.source_logits, labels)
        alignment = self.weight * self.alignment_loss(outputs, progress)
        both = (
            self.correspondence(outputs.source_features) + self.correspondence(outputs.target_features)
        ) / 2
        correspondence = self.correspondence_weight * both
        self.note_loss_parts(source=source_loss, alignment=alignment, correspondence=correspondence)
        return source_loss + alignment + correspondence
