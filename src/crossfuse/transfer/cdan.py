"""Conditional adversarial adaptation with entropy conditioning, CDAN+E (Long, Cao, Wang & Jordan,
"Conditional Adversarial Domain Adaptation", NeurIPS 2018)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.parallel import current_shard, global_sum
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import StepOutputs, TransferMethod
from crossfuse.transfer.dann import DomainClassifier
from crossfuse.transfer.gradient_reversal import dann_lambda, reverse_gradient

#: Above this many entries the outer product is replaced by the randomised multilinear map.
MAX_MULTILINEAR = 4096


class MultilinearMap(nn.Module):
    """``T(f, g)``: the flattened outer product ``f ⊗ g`` ``(d C)``, or, when ``d C`` exceeds
    :data:`MAX_MULTILINEAR`, the randomised map ``(R_f f) ⊙ (R_g g) / sqrt(k)`` with fixed Gaussian
    ``R_f (k, d)`` and ``R_g (k, C)``, ``k = 1024`` (buffers: saved, never trained)."""

    def __init__(self, feature_dim: int, n_classes: int, random_dim: int = 1024) -> None:
        super().__init__()
        self.randomised = feature_dim * n_classes > MAX_MULTILINEAR
        self.output_dim = random_dim if self.randomised else feature_dim * n_classes
        if self.randomised:
            self.register_buffer("features_projection", torch.randn(random_dim, feature_dim))
            self.register_buffer("predictions_projection", torch.randn(random_dim, n_classes))

    def forward(self, features: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        if self.randomised:
            left = features @ self.features_projection.T
            right = predictions @ self.predictions_projection.T
            return left * right / math.sqrt(self.output_dim)
        return torch.bmm(features.unsqueeze(2), predictions.unsqueeze(1)).flatten(1)


def entropy_weights(probabilities: torch.Tensor) -> torch.Tensor:
    """``w_i = 1 + exp(-H(g_i))`` normalised to sum to one over the batch (one domain); under torchrun
    over the global batch (:func:`~crossfuse.parallel.global_sum`), as one process normalises them."""
    entropy = -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(1)
    weights = 1 + torch.exp(-entropy)
    return weights / global_sum(weights)


@TRANSFERS.register("cdan")
class CDAN(TransferMethod):
    """A domain classifier ``D`` sees the multilinear map ``T(f, g)`` of the fused features ``f`` and the
    (detached) class probabilities ``g``, through a gradient-reversal layer with DANN's warm-up:

    ``L_d = sum_{i in S} w_i BCE(D(T_i), 0) + sum_{j in T} w_j BCE(D(T_j), 1)``, ``w`` the entropy weights
    of :func:`entropy_weights` within each domain (CDAN+E: confident samples count more, so uncertain
    ones do not drive the alignment), each domain's weights summing to one, halved. Conditioning on
    ``g`` aligns the joint distribution of features and predictions, not the feature marginals alone:
    classes are matched with classes.

    Parameters
    ----------
    weight
        Multiplier of ``L_d``.
    entropy_conditioning
        Weight samples by ``1 + exp(-H)`` (CDAN+E); ``False`` gives plain CDAN.
    hidden_dim
        Width of the domain classifier.
    """

    supports_regression = False
    regression_refusal = "CDAN conditions on class probabilities; a regression has none"

    def __init__(self, weight: float = 1.0, entropy_conditioning: bool = True, hidden_dim: int = 64) -> None:
        super().__init__(weight=weight)
        self.entropy_conditioning, self.hidden_dim = entropy_conditioning, hidden_dim
        self.map: MultilinearMap | None = None
        self.classifier = nn.Identity()

    def setup(self, model, feature_dims: Mapping[str, int]) -> None:
        self.map = MultilinearMap(feature_dims["fused"], model.n_outputs)
        self.classifier = DomainClassifier(self.map.output_dim, self.hidden_dim)

    def alignment_loss(self, outputs: StepOutputs, progress: float) -> torch.Tensor:
        coefficient = dann_lambda(progress)
        world = current_shard()[1]
        losses = []
        for fused, logits, label in ((outputs.source_fused, outputs.source_logits, 0.0),
                                     (outputs.target_fused, outputs.target_logits, 1.0)):  # fmt: skip
            probabilities = torch.softmax(logits, dim=1).detach()
            joint = reverse_gradient(self.map(fused, probabilities), coefficient)
            domain_logits = self.classifier(joint)
            per_sample = F.binary_cross_entropy_with_logits(
                domain_logits, torch.full_like(domain_logits, label), reduction="none"
            )
            if self.entropy_conditioning:
                weights = entropy_weights(probabilities)
            else:
                weights = torch.full_like(per_sample, 1 / (len(per_sample) * world))
            # this shard's part of the global weighted sum, times the world size: DDP's average of the
            # processes' gradients is then the one-process gradient
            losses.append((weights * per_sample).sum() * world)
        return 0.5 * (losses[0] + losses[1])
