from __future__ import annotations

import torch

from crossfuse.errors import ConfigError
from crossfuse.model import MultimodalModel
from crossfuse.registry import TRANSFERS
from crossfuse.transfer._domains import SourceDomainsMethod, domain_risks


@TRANSFERS.register("group-dro")
class GroupDRO(SourceDomainsMethod):
    """Group distributionally robust optimisation (Sagawa, Koh, Hashimoto & Liang, "Distributionally
    Robust Neural Networks for Group Shifts", ICLR 2020; DomainBed's GroupDRO).

    Minimises the worst source domain's risk rather than the pooled one, through a distribution ``q`` over
    the domains that follows their losses by exponentiated gradient ascent: at every step, with ``R_k``
    the mean loss of domain ``k``'s rows in the batch,

    ``q_k <- q_k exp(eta R_k) / sum_j q_j exp(eta R_j)``,  ``L = sum_k q_k R_k``

    over the domains present in the batch (``q`` renormalised over them). A domain the model serves
    worse gains weight until it is served as well as the others: a model that must hold on any mixture of
    the sources. ``q`` starts uniform, is part of the checkpoint, and is the same in every process (it is
    computed from the global batch).

    Parameters
    ----------
    eta
        Step size of ``q`` (DomainBed's default, 0.01).
    """

    class_weight_refusal = "its per-domain risks are plain means of the rows' losses"

    def __init__(self, eta: float = 0.01) -> None:
        super().__init__()
        if eta < 0:
            raise ConfigError(f"group-dro eta must be >= 0, got {eta}")
        self.eta = eta
        self.register_buffer("domain_weights", torch.ones(0))

    def setup(self, model: MultimodalModel, feature_dims) -> None:
        super().setup(model, feature_dims)
        self.domain_weights = torch.full((self.n_source_domains,), 1.0 / self.n_source_domains)

    def training_loss(self, model: MultimodalModel, source, labels, target, progress: float) -> torch.Tensor:
        row_losses = model.objective.row_losses(model(source), labels)
        domains = self.source_domains(labels.shape[0], labels.device)
        present, risks = domain_risks(row_losses, domains, self.n_source_domains)
        with torch.no_grad():  # the buffer lives beside the model (the method is moved with it)
            self.domain_weights[present] *= torch.exp(self.eta * risks.detach())
            self.domain_weights /= self.domain_weights.sum()
            q = self.domain_weights[present] / self.domain_weights[present].sum()
        return (q * risks).sum()
