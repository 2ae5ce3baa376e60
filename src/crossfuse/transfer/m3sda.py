from __future__ import annotations

from itertools import combinations

import torch

from crossfuse.parallel import gather_shards
from crossfuse.registry import TRANSFERS
from crossfuse.transfer._domains import domain_groups
from crossfuse.transfer.base import StepOutputs, TransferMethod
from crossfuse.transfer.gradient_reversal import dann_lambda


def moment_distance(sources: list[torch.Tensor], target: torch.Tensor, order: int = 2) -> torch.Tensor:
    """``sum_{k=1..order} [mean_i ||E[s_i^k] - E[t^k]||_2 + mean_{i<j} ||E[s_i^k] - E[s_j^k]||_2]``, powers
    taken element-wise (the second term only with two or more sources)."""
    total = target.new_zeros(())
    for k in range(1, order + 1):
        moments = [s.pow(k).mean(0) for s in sources]
        target_moment = target.pow(k).mean(0)
        total = total + torch.stack([(m - target_moment).norm() for m in moments]).mean()
        if len(moments) > 1:
            total = total + torch.stack([(a - b).norm() for a, b in combinations(moments, 2)]).mean()
    return total


@TRANSFERS.register("m3sda")
class MomentMatching(TransferMethod):
    """Multi-source moment matching (Peng et al., "Moment Matching for Multi-Source Domain Adaptation",
    ICCV 2019, M3SDA): the target is aligned with each source domain, and the sources with each other.

    ``L = L_y + weight * lambda_p * MD^2``, ``MD^2 = sum_{k=1}^{2} (1/N sum_i ||E[f(S_i)^k] - E[f(T)^k]||_2 +
    C(N,2)^-1 sum_{i<j} ||E[f(S_i)^k] - E[f(S_j)^k]||_2)``, the moments of each of the ``N`` source
    domains' features and of the target's in the batch. This is the paper's moment-matching part on one
    shared classifier, without the per-source classifiers of M3SDA-beta.

    ``lambda_p`` is DANN's warm-up ``2 / (1 + exp(-10 p)) - 1`` (``warmup=True``, the default), for the
    reason :class:`~crossfuse.transfer.mmd.MMD` has it: from a random start, a constant representation has
    no moment gap, and at full weight from the first step every AV-Digits run (three seeds) reached it and
    sat at chance. ``warmup=False`` is the paper's constant weight.

    Parameters
    ----------
    align
        ``'fused'`` (default), ``'modalities'`` or ``'both'``.
    weight
        Multiplier of ``MD^2``.
    warmup
        Ramp the weight in with ``lambda_p``.
    """

    def __init__(self, align: str = "fused", weight: float = 1.0, warmup: bool = True) -> None:
        super().__init__(align, weight)
        self.warmup = warmup

    def alignment_loss(self, outputs: StepOutputs, progress: float) -> torch.Tensor:
        domains = self.source_domains(outputs.source_logits.shape[0], outputs.source_logits.device)
        losses = []
        for source, target in outputs.aligned_pairs(self.align).values():
            groups = domain_groups(source, domains, self.n_source_domains, min_rows=1)
            losses.append(moment_distance(groups, gather_shards(target)))
        ramp = dann_lambda(progress) if self.warmup else 1.0
        return ramp * torch.stack(losses).mean()
