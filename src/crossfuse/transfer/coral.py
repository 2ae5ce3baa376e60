from __future__ import annotations

import torch

from crossfuse.parallel import gather_shards
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import StepOutputs, TransferMethod


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance ``(X^T X - (1^T X)^T (1^T X) / n) / (n - 1)`` of rows ``x`` (n, d)."""
    n = x.shape[0]
    column_sums = x.sum(0, keepdim=True)
    return (x.T @ x - column_sums.T @ column_sums / n) / (n - 1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||C_S - C_T||_F^2 / (4 d^2)`` (Sun & Saenko, "Deep CORAL", ECCV 2016 workshops)."""
    d = source.shape[1]
    return (covariance(source) - covariance(target)).pow(2).sum() / (4 * d * d)


@TRANSFERS.register("coral")
class CORAL(TransferMethod):
    """Deep CORAL: align the second-order statistics of source and target features.

    ``L = L_y + weight * mean_spaces ||C_S - C_T||_F^2 / (4 d^2)``, ``C`` the feature covariances of the
    batch (Sun & Saenko, ECCV 2016 workshops). Under torchrun the covariances are those of the global
    batch (:func:`~crossfuse.parallel.gather_shards`), not of each process's shard.
    """

    uses_target = True

    def alignment_loss(self, outputs: StepOutputs, progress: float) -> torch.Tensor:
        pairs = outputs.aligned_pairs(self.align)
        return torch.stack([coral_loss(gather_shards(s), gather_shards(t)) for s, t in pairs.values()]).mean()
