"""Joint Adaptation Networks (Long, Zhu, Wang & Jordan, "Deep Transfer Learning with Joint Adaptation
Networks", ICML 2017)."""

from __future__ import annotations

import torch

from crossfuse.errors import ConfigError
from crossfuse.parallel import gather_shards
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import StepOutputs, TransferMethod
from crossfuse.transfer.gradient_reversal import dann_lambda
from crossfuse.transfer.mmd import mmd_from_kernel, multi_kernel_matrix


def joint_mmd(
    source_features: torch.Tensor,
    target_features: torch.Tensor,
    source_probabilities: torch.Tensor,
    target_probabilities: torch.Tensor,
    sigma: float = 0.92,
) -> torch.Tensor:
    """Biased estimate of the squared joint MMD of features and class probabilities.

    The joint kernel is the product of a kernel a layer, ``K(i, j) = K_f(f_i, f_j) K_y(y_i, y_j)``: ``K_f``
    the multi-kernel Gaussian of DAN on the features (:func:`~crossfuse.transfer.mmd.multi_kernel_matrix`),
    ``K_y(a, b) = exp(-||a - b||^2 / (2 sigma^2))`` on the softmax outputs (``2 sigma^2 = 1.68``, the
    paper's bandwidth). ``JMMD^2 = mean K(s, s') + mean K(t, t') - 2 mean K(s, t)``. Matching the joint
    law of representation and prediction, not only the representation's marginal, keeps a source class
    from being aligned onto a different target class.
    """
    n_source = source_features.shape[0]
    features = multi_kernel_matrix(torch.cat([source_features, target_features]))
    probabilities = torch.cat([source_probabilities, target_probabilities])
    prediction_kernel = torch.exp(-torch.cdist(probabilities, probabilities).pow(2) / (2 * sigma**2))
    return mmd_from_kernel(features * prediction_kernel, n_source)


@TRANSFERS.register("jan")
class JointAdaptation(TransferMethod):
    """``L = L_y + weight * lambda_p * JMMD^2((f_s, y_s), (f_t, y_t))`` (:func:`joint_mmd`) on the fused
    representation and the softmax of the head, gradients through both (JAN). Under torchrun the kernel
    means run over the global batch (:func:`~crossfuse.parallel.gather_shards`).

    ``lambda_p`` is DANN's warm-up, for the reason :class:`~crossfuse.transfer.mmd.MMD` gives (from a random
    start a constant representation has zero discrepancy); ``warmup=False`` is the constant weight.
    """

    uses_target = True
    supports_regression = False
    regression_refusal = (
        "JAN matches the joint law of features and class probabilities; a regression has none"
    )

    def __init__(self, weight: float = 1.0, warmup: bool = True, sigma: float = 0.92) -> None:
        super().__init__("fused", weight)
        if sigma <= 0:
            raise ConfigError(f"jan sigma must be > 0, got {sigma}")
        self.warmup, self.sigma = warmup, sigma

    def alignment_loss(self, outputs: StepOutputs, progress: float) -> torch.Tensor:
        ramp = dann_lambda(progress) if self.warmup else 1.0
        return ramp * joint_mmd(
            gather_shards(outputs.source_fused),
            gather_shards(outputs.target_fused),
            gather_shards(torch.softmax(outputs.source_logits, dim=1)),
            gather_shards(torch.softmax(outputs.target_logits, dim=1)),
            self.sigma,
        )
