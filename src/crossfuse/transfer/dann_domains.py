from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.model import MultimodalModel
from crossfuse.registry import TRANSFERS
from crossfuse.transfer._domains import SourceDomainsMethod
from crossfuse.transfer.dann import DomainClassifier
from crossfuse.transfer.gradient_reversal import dann_lambda, reverse_gradient


@TRANSFERS.register("dann-dg")
class DomainAdversarialDG(SourceDomainsMethod):
    """Domain-adversarial training across source domains (Ganin et al., JMLR 2016, with a multi-class
    domain head, as DomainBed runs DANN for domain generalisation).

    A domain classifier ``G_d`` with one output per source domain learns which source a row comes from,
    through a gradient-reversal layer, so the features learn to hide it:

    ``L = L_y + weight * mean_spaces CE(G_d(R_lambda(f_i)), d_i)``,

    ``d_i`` the row's source domain, ``R_lambda`` the identity forward and ``-lambda_p`` times the gradient
    backward, ``lambda_p = 2 / (1 + exp(-gamma p)) - 1`` over training progress ``p``. As ``dann``, one
    classifier per aligned space: each modality's features and the fused representation by default.

    Parameters
    ----------
    align
        ``'fused'``, ``'modalities'`` or ``'both'`` (default).
    weight
        Multiplier of the domain loss.
    gamma
        The warm-up steepness.
    hidden_dim
        Width of each domain classifier.
    """

    def __init__(self, align: str = "both", weight: float = 1.0, gamma: float = 10.0, hidden_dim: int = 64):
        super().__init__(align, weight)
        self.gamma, self.hidden_dim = gamma, hidden_dim
        self.classifiers = nn.ModuleDict()

    def setup(self, model: MultimodalModel, feature_dims: Mapping[str, int]) -> None:
        super().setup(model, feature_dims)
        spaces = [m for m in sorted(feature_dims) if m != "fused"] if self.align != "fused" else []
        if self.align in ("fused", "both"):
            spaces.append("fused")
        self.classifiers = nn.ModuleDict(
            {
                s: DomainClassifier(feature_dims[s], self.hidden_dim, outputs=self.n_source_domains)
                for s in spaces
            }
        )

    def training_loss(self, model: MultimodalModel, source, labels, target, progress: float) -> torch.Tensor:
        outputs = self.source_outputs(model, source)
        loss = model.objective.loss(outputs.source_logits, labels)
        domains = self.source_domains(labels.shape[0], labels.device)
        coefficient = dann_lambda(progress, self.gamma)
        losses = [
            F.cross_entropy(self.classifiers[space](reverse_gradient(features, coefficient)), domains)
            for space, (features, _) in outputs.aligned_pairs(self.align).items()
        ]
        alignment = self.weight * torch.stack(losses).mean()
        self.note_loss_parts(source=loss, alignment=alignment)
        return loss + alignment
