"""What the domain-generalisation methods share: the source batch split by domain, and the refusal of a
task with too few source domains."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from crossfuse.errors import ConfigError
from crossfuse.model import MultimodalModel
from crossfuse.parallel import gather_shards
from crossfuse.transfer.base import StepOutputs, TransferMethod, run_model


def domain_groups(features: torch.Tensor, domains: torch.Tensor, n_domains: int, min_rows: int = 2):
    """The rows of ``features`` of each domain ``0 .. n_domains - 1`` that has at least ``min_rows`` of
    them in the global batch (under torchrun every process gathers the whole batch first)."""
    features, domains = gather_shards(features), gather_shards(domains)
    groups = [features[domains == k] for k in range(n_domains)]
    return [g for g in groups if g.shape[0] >= min_rows]


def domain_risks(
    row_losses: torch.Tensor, domains: torch.Tensor, n_domains: int
) -> tuple[list[int], torch.Tensor]:
    """The source domains with a row in the global batch, in order, and ``(K,)`` the mean loss of each
    one's rows (under torchrun every process gathers the whole batch first; one read on the host)."""
    row_losses, domains = gather_shards(row_losses), gather_shards(domains)
    present = torch.bincount(domains, minlength=n_domains).nonzero().flatten().tolist()
    return present, torch.stack([row_losses[domains == k].mean() for k in present])


class SourceDomainsMethod(TransferMethod):
    """A domain-generalisation method: it trains on the labelled source domains alone, knowing which
    domain each row comes from, and never sees a target row before evaluation.

    ``min_source_domains`` is the fewest source domains whose differences the method can use.
    """

    uses_target = False
    domain_generalization = True
    stops_early = False
    min_source_domains = 2

    def setup(self, model: MultimodalModel, feature_dims: Mapping[str, int]) -> None:
        if self.n_source_domains < self.min_source_domains:
            name = getattr(type(self), "registered_name", type(self).__name__)
            raise ConfigError(
                f"--transfer {name}: learns from the differences between source domains and needs at least "
                f"{self.min_source_domains}; the task has {self.n_source_domains} (give several --source "
                "domains, or use erm)"
            )

    def source_outputs(self, model: MultimodalModel, source: Mapping[str, torch.Tensor]) -> StepOutputs:
        """The model's features and logits on the source batch (the target parts are empty)."""
        empty = {m: x[:0] for m, x in source.items()}
        return run_model(model, source, empty)
