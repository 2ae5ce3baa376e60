"""Minimum Class Confusion (Jin, Wang, Long & Wang, "Minimum Class Confusion for Versatile Domain
Adaptation", ECCV 2020)."""

from __future__ import annotations

import torch

from crossfuse.errors import ConfigError
from crossfuse.parallel import gather_shards
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import StepOutputs, TransferMethod


def class_confusion_loss(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """MCC's loss on one batch of target logits ``z`` ``(B, C)``.

    ``Y = softmax(z / T)``; entropy weights ``w_i = B (1 + exp(-H(y_i))) / sum_j (1 + exp(-H(y_j)))``
    (detached: they only say which samples count more); class correlation ``C = Y^T diag(w) Y``;
    category normalisation ``C~_jk = C_jk / sum_l C_lk``; the loss is the normalised off-diagonal mass
    ``(sum_jk C~_jk - tr C~) / C``.
    """
    batch, classes = logits.shape
    probabilities = torch.softmax(logits / temperature, dim=1)
    entropy = -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(1).detach()
    weights = 1 + torch.exp(-entropy)
    weights = batch * weights / weights.sum()
    confusion = (probabilities * weights[:, None]).T @ probabilities
    confusion = confusion / confusion.sum(0, keepdim=True)
    return (confusion.sum() - confusion.trace()) / classes


@TRANSFERS.register("mcc")
class MinimumClassConfusion(TransferMethod):
    """``L = L_y + weight * L_MCC(target logits)``: push the target predictions of a batch to confuse
    classes as little as possible (:func:`class_confusion_loss`). Needs no domain classifier and no
    feature alignment, so it composes with every fusion, early fusion included. Under torchrun the
    confusion matrix is that of the global batch (:func:`~crossfuse.parallel.gather_shards`).

    Parameters
    ----------
    temperature
        ``T`` of the softened predictions (2.5, as the authors' transfer-learning library uses).
    weight
        Multiplier of ``L_MCC``.
    """

    supports_regression = False
    regression_refusal = "minimum class confusion works on class probabilities; a regression has none"

    def __init__(self, temperature: float = 2.5, weight: float = 1.0) -> None:
        super().__init__(weight=weight)
        if temperature <= 0:
            raise ConfigError(f"mcc temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def alignment_loss(self, outputs: StepOutputs, progress: float) -> torch.Tensor:
        return class_confusion_loss(gather_shards(outputs.target_logits), self.temperature)
