from __future__ import annotations

import torch

from crossfuse.errors import ConfigError
from crossfuse.model import MultimodalModel
from crossfuse.registry import TRANSFERS
from crossfuse.transfer._domains import SourceDomainsMethod, domain_risks


@TRANSFERS.register("vrex")
class VarianceRiskExtrapolation(SourceDomainsMethod):
    """Variance risk extrapolation, V-REx (Krueger et al., "Out-of-Distribution Generalization via Risk
    Extrapolation", ICML 2021; DomainBed's VREx).

    ``L = mean_k R_k + beta * mean_k (R_k - mean_j R_j)^2``, ``R_k`` the mean loss of source domain ``k``'s
    rows in the batch. Equal risks across the training domains are what a model invariant to them would
    have; penalising their variance pushes the model towards the features whose relation to the label
    holds in every domain, and away from those that work in one only. As DomainBed runs it, ``beta`` is 1
    for the first tenth of the schedule (:data:`ANNEAL`; DomainBed: the first 500 of 5,000 steps), so that
    the model first learns the task, then ``penalty``; at the switch the optimiser restarts (Adam's
    moments and step count from zero, as DomainBed's does, "because it doesn't like the sharp jump in
    gradient magnitudes"), while the learning-rate schedule goes on.

    Parameters
    ----------
    penalty
        ``beta`` after the first tenth (DomainBed's default, 10).
    """

    class_weight_refusal = "its per-domain risks are plain means of the rows' losses"

    #: Share of the schedule during which ``beta = 1``.
    ANNEAL = 0.1
    optimizer_restart = ANNEAL

    def __init__(self, penalty: float = 10.0) -> None:
        super().__init__()
        if penalty < 0:
            raise ConfigError(f"vrex penalty must be >= 0, got {penalty}")
        self.penalty = penalty

    def training_loss(self, model: MultimodalModel, source, labels, target, progress: float) -> torch.Tensor:
        row_losses = model.objective.row_losses(model(source), labels)
        domains = self.source_domains(labels.shape[0], labels.device)
        _, risks = domain_risks(row_losses, domains, self.n_source_domains)
        beta = 1.0 if progress < self.ANNEAL else self.penalty
        mean_risk, variance = risks.mean(), (risks - risks.mean()).pow(2).mean()
        weighted = beta * variance
        self.note_loss_parts(source=mean_risk, alignment=weighted)
        return mean_risk + weighted
