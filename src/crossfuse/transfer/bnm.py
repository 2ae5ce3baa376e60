"""Batch Nuclear-norm Maximization (Cui, Wang, Zhuo, Li, Huang & Tian, "Towards Discriminability and
Diversity: Batch Nuclear-norm Maximization under Label Insufficient Situations", CVPR 2020)."""

from __future__ import annotations

import torch

from crossfuse.parallel import gather_shards
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import StepOutputs, TransferMethod
from crossfuse.transfer.gradient_reversal import dann_lambda


def batch_nuclear_norm_loss(logits: torch.Tensor) -> torch.Tensor:
    """BNM's loss on one batch of target logits ``z`` ``(B, C)``: ``-||A||_* / B`` with
    ``A = softmax(z)`` row by row and ``||A||_* = sum_k s_k(A)`` the sum of its singular values.

    ``||A||_F <= ||A||_* <= sqrt(min(B, C)) ||A||_F``: the Frobenius norm grows as the rows become
    confident (discriminability, what entropy minimisation pushes) and, for a given Frobenius norm, the
    nuclear norm grows with the rank of ``A``, i.e. with the number of classes the batch predicts
    (diversity), so maximising it does not collapse the target onto a few classes as entropy
    minimisation can. It is ``-sqrt(B) / B`` for a batch of identical one-hot rows and
    ``-sqrt(B C) / B`` for one-hot rows covering all ``C <= B`` classes equally. The ``1 / B`` is the paper's equation (3); the
    authors' code divides by ``min(B, C)`` instead (mean of the singular values).
    """
    probabilities = torch.softmax(logits, dim=1)
    return -torch.linalg.svdvals(probabilities).sum() / logits.shape[0]


@TRANSFERS.register("bnm")
class BatchNuclearNormMaximization(TransferMethod):
    """``L = L_y + weight * L_BNM(target logits)`` (:func:`batch_nuclear_norm_loss`), ``weight`` 1 as
    in the paper's unsupervised domain adaptation experiments. Like MCC it needs no domain classifier
    and aligns no features, so it composes with every fusion, early fusion included. Under torchrun the
    matrix is that of the global batch (:func:`~crossfuse.parallel.gather_shards`).
    """

    supports_regression = False
    regression_refusal = "batch nuclear-norm maximisation works on class probabilities; a regression has none"

    def __init__(self, weight: float = 1.0, warmup: bool = False) -> None:
        super().__init__(weight=weight)
        self.warmup = warmup

    def alignment_loss(self, outputs: StepOutputs, progress: float) -> torch.Tensor:
        ramp = dann_lambda(progress) if self.warmup else 1.0
        return ramp * batch_nuclear_norm_loss(gather_shards(outputs.target_logits))
