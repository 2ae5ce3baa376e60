from __future__ import annotations

from itertools import combinations

import torch

from crossfuse.model import MultimodalModel
from crossfuse.registry import TRANSFERS
from crossfuse.transfer._domains import SourceDomainsMethod, domain_groups
from crossfuse.transfer.coral import covariance


def moment_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||mu_a - mu_b||^2 / d + ||C_a - C_b||_F^2 / d^2``: the mean squared difference of the two
    domains' feature means and of their (unbiased) covariances."""
    return (a.mean(0) - b.mean(0)).pow(2).mean() + (covariance(a) - covariance(b)).pow(2).mean()


def pairwise_coral(groups: list[torch.Tensor]) -> torch.Tensor:
    """The mean of :func:`moment_gap` over every pair of domains."""
    return torch.stack([moment_gap(a, b) for a, b in combinations(groups, 2)]).mean()


@TRANSFERS.register("coral-dg")
class DomainCORAL(SourceDomainsMethod):
    """CORAL across source domains (Sun & Saenko, "Deep CORAL", ECCV 2016 workshops, as DomainBed applies
    it to domain generalisation).

    ``L = L_y + weight * mean_{i<j} (||mu_i - mu_j||^2 / d + ||C_i - C_j||_F^2 / d^2)`` over every pair of
    source domains present in the batch (at least two rows each), ``mu`` and ``C`` the mean and covariance
    of a domain's features. Features that keep every source's first two moments alike carry less of what
    tells the sources apart, and so, one hopes, of what sets an unseen domain apart.

    Parameters
    ----------
    align
        ``'fused'`` (default), ``'modalities'`` or ``'both'``.
    weight
        Multiplier of the penalty (DomainBed's default, 1).
    """

    def __init__(self, align: str = "fused", weight: float = 1.0) -> None:
        super().__init__(align, weight)

    def training_loss(self, model: MultimodalModel, source, labels, target, progress: float) -> torch.Tensor:
        outputs = self.source_outputs(model, source)
        loss = model.objective.loss(outputs.source_logits, labels)
        domains = self.source_domains(labels.shape[0], labels.device)
        penalties = []
        for features, _ in outputs.aligned_pairs(self.align).values():
            groups = domain_groups(features, domains, self.n_source_domains)
            if len(groups) >= 2:
                penalties.append(pairwise_coral(groups))
        if not penalties:  # a batch drawn from one domain: nothing to compare
            self.note_loss_parts(source=loss, alignment=torch.zeros_like(loss))
            return loss
        alignment = self.weight * torch.stack(penalties).mean()
        self.note_loss_parts(source=loss, alignment=alignment)
        return loss + alignment
