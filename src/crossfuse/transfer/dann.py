from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import StepOutputs, TransferMethod
from crossfuse.transfer.gradient_reversal import dann_lambda, reverse_gradient


class DomainClassifier(nn.Module):
    """MLP ``d -> hidden -> hidden -> 1`` giving the logit of "this sample is from the target" (or, with
    ``outputs > 1``, one logit per domain)."""

    def __init__(self, input_dim: int, hidden_dim: int = 64, outputs: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits


@TRANSFERS.register("dann")
class DANN(TransferMethod):
    """Domain-adversarial training (Ganin et al., "Domain-Adversarial Training of Neural Networks",
    JMLR 2016).

    A domain classifier ``G_d`` learns to tell source (label 0) from target (label 1) features through a
    gradient-reversal layer, so one backward pass makes ``G_d`` minimise and the feature extractor
    ``G_f`` maximise the domain loss:

    ``L = L_y(G_y(G_f(x_s)), y_s) + L_d``,
    ``L_d = mean_spaces BCE(G_d(R_lambda(f_s)), 0) / 2 + BCE(G_d(R_lambda(f_t)), 1) / 2``,

    where ``R_lambda`` is the identity forward and multiplies gradients by ``-lambda_p`` backward, with
    the paper's warm-up ``lambda_p = 2 / (1 + exp(-10 p)) - 1`` over training progress ``p``. One domain
    classifier per aligned space (the fused representation and/or each modality's features).

    By default (``align='both'``) every modality's features and the fused representation get their own
    domain classifier: ``benchmarks/alignment_space.py`` and ``benchmarks/two_moons.py`` measure the
    choice (the README has the numbers). Aligning at two depths leaves the feature extractor less room to
    match the domains' marginals while swapping their classes.

    Parameters
    ----------
    align
        ``'fused'``, ``'modalities'`` or ``'both'``.
    weight
        Multiplier of ``L_d``.
    gamma
        The warm-up steepness (10 in the paper).
    hidden_dim
        Width of each domain classifier.
    """

    uses_target = True

    def __init__(self, align: str = "both", weight: float = 1.0, gamma: float = 10.0, hidden_dim: int = 64):
        super().__init__(align, weight)
        self.gamma, self.hidden_dim = gamma, hidden_dim
        self.classifiers = nn.ModuleDict()
        self.last_lambda = 0.0

    def setup(self, model, feature_dims: Mapping[str, int]) -> None:
        spaces = [m for m in sorted(feature_dims) if m != "fused"] if self.align != "fused" else []
        if self.align in ("fused", "both"):
            spaces.append("fused")
        self.classifiers = nn.ModuleDict(
            {s: DomainClassifier(feature_dims[s], self.hidden_dim) for s in spaces}
        )

    def source_row_weights(self) -> torch.Tensor | None:
        """Per-row weights of the source rows' domain loss in this step (``None``: each counts once)."""
        return None

    def domain_loss(self, source: torch.Tensor, target: torch.Tensor, space: str, coefficient: float):
        """BCE of the domain classifier of ``space`` on reversed features, each source row's term times
        its :meth:`source_row_weights` when there are some."""
        logits_s = self.classifiers[space](reverse_gradient(source, coefficient))
        logits_t = self.classifiers[space](reverse_gradient(target, coefficient))
        weights, zeros = self.source_row_weights(), torch.zeros_like(logits_s)
        if weights is None:
            loss = 0.5 * F.binary_cross_entropy_with_logits(logits_s, zeros)
        else:
            losses = F.binary_cross_entropy_with_logits(logits_s, zeros, reduction="none")
            loss = 0.5 * (weights * losses).mean()
        loss = loss + 0.5 * F.binary_cross_entropy_with_logits(logits_t, torch.ones_like(logits_t))
        return loss

    def alignment_loss(self, outputs: StepOutputs, progress: float) -> torch.Tensor:
        self.last_lambda = dann_lambda(progress, self.gamma)
        pairs = outputs.aligned_pairs(self.align)
        losses = [self.domain_loss(s, t, space, self.last_lambda) for space, (s, t) in pairs.items()]
        return torch.stack(losses).mean()

    @torch.no_grad()
    def domain_accuracy(self, source: torch.Tensor, target: torch.Tensor, space: str = "fused") -> float:
        """Balanced accuracy of the domain classifier of ``space`` (0.5 = chance: the domains are aligned)."""
        correct_s = (self.classifiers[space](source) < 0).float().mean()
        correct_t = (self.classifiers[space](target) > 0).float().mean()
        return float((correct_s + correct_t) / 2)
