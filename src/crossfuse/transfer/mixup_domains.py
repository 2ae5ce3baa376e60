from __future__ import annotations

import torch

from crossfuse.errors import ConfigError
from crossfuse.model import MultimodalModel
from crossfuse.parallel import current_shard, gather_shards
from crossfuse.registry import TRANSFERS
from crossfuse.transfer._domains import SourceDomainsMethod
from crossfuse.transfer.mixup import mix


def other_domain_partners(domains: torch.Tensor) -> torch.Tensor:
    """For each row, a random row of another domain (itself when the batch holds one domain only)."""
    others = (domains[:, None] != domains[None, :]).float()
    lonely = others.sum(1) == 0
    others[lonely] = torch.eye(len(domains), device=domains.device)[lonely]
    return torch.multinomial(others, 1).squeeze(1)


@TRANSFERS.register("mixup-dg")
class InterDomainMixup(SourceDomainsMethod):
    """Inter-domain mixup (Yan et al., "Improve Unsupervised Domain Adaptation with Mixup Training",
    arXiv 2001.00677, 2020; DomainBed's Mixup): each source row is mixed with a row of another source
    domain, inputs and labels alike.

    ``x~ = lambda x_i + (1 - lambda) x_j``, ``lambda ~ Beta(alpha, alpha)`` per pair, in every modality;
    ``L = mean_i [lambda_i l(f(x~_i), y_i) + (1 - lambda_i) l(f(x~_i), y_j)]``, ``j`` a random row of
    another domain in the batch. The model learns to behave linearly between domains, not only on them.

    Parameters
    ----------
    alpha
        Beta parameter (DomainBed's default, 0.2: most mixtures are close to one of the two rows).
    """

    def __init__(self, alpha: float = 0.2) -> None:
        super().__init__()
        if alpha <= 0:
            raise ConfigError(f"mixup-dg alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def training_loss(self, model: MultimodalModel, source, labels, target, progress: float) -> torch.Tensor:
        rank, world = current_shard()
        domains = self.source_domains(labels.shape[0], labels.device)
        # partners and lambdas are drawn for the global batch, so N processes train what one would
        partners = other_domain_partners(gather_shards(domains))
        lam_all = torch.distributions.Beta(self.alpha, self.alpha).sample((len(partners),)).to(labels.device)
        partners, lam = partners[rank::world], lam_all[rank::world]
        mixed = {m: mix(x, gather_shards(x)[partners], lam) for m, x in source.items()}
        outputs = model(mixed)
        partner_labels = gather_shards(labels)[partners]
        # the objective's weighted mean is sum w l / sum w over the global batch: times mean(w) it is
        # sum w l / n, so the two terms add up to the mixed loss
        objective = model.objective
        return lam_all.mean() * objective.loss(outputs, labels, lam) + (1 - lam_all).mean() * objective.loss(
            outputs, partner_labels, 1 - lam
        )
