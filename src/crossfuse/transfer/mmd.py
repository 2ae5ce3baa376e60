from __future__ import annotations

from collections.abc import Sequence

import torch

from crossfuse.parallel import gather_shards
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import StepOutputs, TransferMethod
from crossfuse.transfer.gradient_reversal import dann_lambda

MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def multi_kernel_matrix(joined: torch.Tensor, multipliers: Sequence[float] = MULTIPLIERS) -> torch.Tensor:
    """``K(a, b) = sum_k exp(-||a - b||^2 / (m_k sigma^2))`` between all rows of ``joined``, where
    ``sigma^2`` is the mean squared distance between its distinct pairs (held constant for the gradient)."""
    distances = torch.cdist(joined, joined).pow(2)
    n = joined.shape[0]
    bandwidth = (distances.sum() / (n * n - n)).detach().clamp_min(1e-12)
    return sum(torch.exp(-distances / (bandwidth * m)) for m in multipliers)


def mmd_from_kernel(kernel: torch.Tensor, n_source: int) -> torch.Tensor:
    """``mean K(s, s') + mean K(t, t') - 2 mean K(s, t)`` from the kernel matrix of the joined batch (source
    rows first): the biased estimate of the squared MMD."""
    k_ss = kernel[:n_source, :n_source].mean()
    k_tt = kernel[n_source:, n_source:].mean()
    k_st = kernel[:n_source, n_source:].mean()
    return k_ss + k_tt - 2 * k_st


def multi_kernel_mmd(
    source: torch.Tensor, target: torch.Tensor, multipliers: Sequence[float] = MULTIPLIERS
) -> torch.Tensor:
    """Biased estimate of the squared MMD with a sum of Gaussian kernels (:func:`multi_kernel_matrix`).

    ``MMD^2 = mean K(s, s') + mean K(t, t') - 2 mean K(s, t)``, as in the multi-kernel MMD of Long et al.,
    "Learning Transferable Features with Deep Adaptation Networks" (ICML 2015).
    """
    return mmd_from_kernel(multi_kernel_matrix(torch.cat([source, target]), multipliers), source.shape[0])


@TRANSFERS.register("mmd")
class MMD(TransferMethod):
    """Align kernel mean embeddings: ``L = L_y + weight * lambda_p * mean_spaces MMD^2_k(f_s, f_t)`` with
    the multi-kernel Gaussian MMD of Long et al. (ICML 2015). Under torchrun the kernel means run over the
    global batch (:func:`~crossfuse.parallel.gather_shards`), not each process's shard.

    ``lambda_p`` is DANN's warm-up ``2 / (1 + exp(-10 p)) - 1`` over training progress ``p`` (``warmup=True``,
    the default). DAN starts from a network pre-trained on ImageNet; from a random start, a constant
    representation has zero MMD, and the full weight from the first step can reach it before the classifier
    has learnt anything: every encoder unit dies and the run sits at chance (seen on the digits-halves
    images, ``benchmarks/digits_halves.py``). ``warmup=False`` is the constant weight of the paper.
    """

    uses_target = True

    def __init__(self, align: str = "fused", weight: float = 1.0, warmup: bool = True) -> None:
        super().__init__(align, weight)
        self.warmup = warmup

    def alignment_loss(self, outputs: StepOutputs, progress: float) -> torch.Tensor:
        pairs = outputs.aligned_pairs(self.align)
        ramp = dann_lambda(progress) if self.warmup else 1.0
        return (
            ramp
            * torch.stack(
                [multi_kernel_mmd(gather_shards(s), gather_shards(t)) for s, t in pairs.values()]
            ).mean()
        )
