"""Source-free adaptation, SHOT (Liang, Hu & Feng, "Do We Really Need to Access the Source Data? Source
Hypothesis Transfer for Unsupervised Domain Adaptation", ICML 2020)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from crossfuse.errors import ConfigError
from crossfuse.model import MultimodalModel
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import TransferMethod


def information_maximisation(probabilities: torch.Tensor) -> torch.Tensor:
    """``mean_i H(p_i) - H(mean_i p_i)``: confident predictions (low conditional entropy) that still use
    every class (high marginal entropy)."""
    log = torch.log(probabilities.clamp_min(1e-12))
    conditional = -(probabilities * log).sum(1).mean()
    marginal = probabilities.mean(0)
    return conditional + (marginal * torch.log(marginal.clamp_min(1e-12))).sum()


def cluster_pseudo_labels(features: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """SHOT's self-supervised pseudo-labels: class centroids of the features weighted by the predictions,
    ``c_k = sum_i p_ik f_i / sum_i p_ik``, each row labelled by its nearest centroid in cosine distance;
    then centroids of those hard labels and nearest centroid again. Features get a constant 1 appended
    and are L2-normalised first, as in the authors' code."""
    augmented = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)
    augmented = F.normalize(augmented, dim=1)
    centroids = (probabilities.T @ augmented) / probabilities.sum(0)[:, None].clamp_min(1e-12)
    labels = (augmented @ F.normalize(centroids, dim=1).T).argmax(1)
    one_hot = F.one_hot(labels, probabilities.shape[1]).to(augmented.dtype)
    centroids = (one_hot.T @ augmented) / one_hot.sum(0)[:, None].clamp_min(1e-12)
    return (augmented @ F.normalize(centroids, dim=1).T).argmax(1)


@TRANSFERS.register("shot")
class SHOT(TransferMethod):
    """Train on the source as source-only does; then adapt on target data alone, never reading a source
    row: the head (the source hypothesis) is frozen and the encoders and fusion minimise
    ``information_maximisation(p) + beta CE(p, y^)``, with ``y^`` the clustering pseudo-labels of
    :func:`cluster_pseudo_labels`, recomputed at the start of every adaptation epoch.

    :meth:`adapt` needs only a trained model and unlabelled target rows, so it runs from a finished run
    folder as well (``crossfuse adapt RUN --data FOLDER``).

    Parameters
    ----------
    epochs
        Adaptation epochs over the target rows.
    lr_scale
        Adaptation learning rate relative to the source phase.
    beta
        Weight of the pseudo-label loss (0.3 in the paper).
    batch_size
        Target rows a step.
    """

    uses_target = False
    supports_regression = False
    regression_refusal = "SHOT maximises the information of class predictions; a regression has none"

    def __init__(
        self, epochs: int = 10, lr_scale: float = 0.1, beta: float = 0.3, batch_size: int = 64
    ) -> None:
        super().__init__()
        if epochs < 1 or batch_size < 2:
            raise ConfigError("shot needs epochs >= 1 and batch_size >= 2")
        self.epochs, self.lr_scale, self.beta, self.batch_size = epochs, lr_scale, beta, batch_size

    def after_training(self, model, shots, source, lr: float, seed: int, target=None) -> None:
        if target is None:
            raise ConfigError("shot adapts on the target rows, and none were given")
        self.adapt(model, target, lr, seed)

    def adapt(self, model: MultimodalModel, target: Mapping[str, np.ndarray], lr: float, seed: int) -> None:
        """The source-free phase on unlabelled ``target`` rows; leaves the adapted model in eval mode."""
        from crossfuse.train.loop import predict, to_tensors

        generator = torch.Generator().manual_seed(seed + 11)
        device = next(model.parameters()).device
        for parameter in model.head.parameters():
            parameter.requires_grad_(False)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=lr * self.lr_scale)
        n = len(next(iter(target.values())))
        batch = min(self.batch_size, n)
        for _ in range(self.epochs):
            probabilities, features = predict(model, target)
            pseudo = cluster_pseudo_labels(torch.from_numpy(features), torch.from_numpy(probabilities)).to(
                device
            )
            model.train()
            order = torch.randperm(n, generator=generator)
            for start in range(0, n - batch + 1, batch):
                rows = order[start : start + batch]
                logits = model(to_tensors(target, rows.numpy(), device))
                loss = information_maximisation(torch.softmax(logits, dim=1))
                loss = loss + self.beta * F.cross_entropy(logits, pseudo[rows.to(device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        for parameter in model.head.parameters():
            parameter.requires_grad_(True)
        model.eval()
