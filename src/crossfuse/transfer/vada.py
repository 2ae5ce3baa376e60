"""Virtual Adversarial Domain Adaptation, VADA (Shu, Bui, Narui & Ermon, "A DIRT-T Approach to
Unsupervised Domain Adaptation", ICLR 2018): DANN plus the cluster assumption on the target."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from crossfuse.errors import ConfigError
from crossfuse.model import MultimodalModel
from crossfuse.normalize import Standardize
from crossfuse.parallel import draw_for_shard
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import run_model
from crossfuse.transfer.dann import DANN


def conditional_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``mean_i H(p_i) = -mean_i sum_k p_ik log p_ik`` with ``p_i = softmax(z_i)``; the gradient flows
    through both factors, as in the paper's ``L_c``."""
    log_p = torch.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(1).mean()


def _row_kl(reference: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(reference_i) || softmax(logits_i))`` for each row."""
    log_p = torch.log_softmax(reference, dim=1)
    return (log_p.exp() * (log_p - torch.log_softmax(logits, dim=1))).sum(1)


def _unit_rows(directions: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each row of the joint direction (every modality's part together) scaled to Euclidean norm 1."""
    squares = sum(d.flatten(1).pow(2).sum(1) for d in directions.values())
    norm = torch.sqrt(squares).clamp_min(1e-12)
    return {m: d / norm.view(-1, *[1] * (d.dim() - 1)) for m, d in directions.items()}


def virtual_adversarial_kl(
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    inputs: Mapping[str, torch.Tensor],
    logits: torch.Tensor,
    scales: Mapping[str, torch.Tensor],
    radius: float,
    xi: float = 1e-2,
    directions: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-row virtual adversarial KL (Miyato, Maeda, Koyama & Ishii, "Virtual Adversarial Training",
    TPAMI 2019), one power iteration, in the model's normalised input space.

    With ``p = softmax(z)`` the (detached) predictions at ``x`` and ``f`` the model:
    ``d`` a random direction (``directions``, or standard normal), each row of unit norm over all
    modalities together; ``g = grad_r KL(p || f(x + s * r))`` at ``r = xi radius d``; ``r_adv = radius *
    g / ||g||``; the result is ``KL(p_i || f(x + s * r_adv)_i)`` for each row ``i``. ``s`` (``scales``)
    is each input feature's normalisation scale, so ``r`` is measured in the units the encoders see.
    For small ``xi``, ``g`` is proportional to ``H d`` with ``H`` the Hessian of the KL at ``r = 0``: one
    step of the power iteration towards the direction in which the prediction changes fastest. ``p``
    must be ``f(x)`` under the same randomness as the other passes (no dropout, or the same masks), or
    ``g`` follows the dropout noise instead. The probe is a share of the radius (``xi = 10^-2``) rather
    than the paper's absolute ``10^-6``: in float32 a probe that small changes no probability by more
    than its rounding, and the gradient of a row is then exactly zero (a row in ten on a small model);
    at ``10^-3`` the direction was still rounding-sensitive enough that 1 and 2 processes parted by
    ``2 x 10^-5`` in six steps (``tests/test_distributed.py``).
    """
    reference = logits.detach()
    if directions is None:
        directions = {
            m: draw_for_shard(lambda rows, x=x: torch.randn((rows, *x.shape[1:]), device=x.device), len(x))
            for m, x in inputs.items()
        }
    probe = {m: (xi * radius * d).requires_grad_() for m, d in _unit_rows(directions).items()}
    nudged = forward({m: x + probe[m] * scales[m] for m, x in inputs.items()})
    gradients = torch.autograd.grad(_row_kl(reference, nudged).sum(), list(probe.values()))
    adversarial = _unit_rows({m: g.detach() for m, g in zip(probe, gradients, strict=True)})
    return _row_kl(
        reference, forward({m: x + radius * adversarial[m] * scales[m] for m, x in inputs.items()})
    )


def input_scales(model: MultimodalModel, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each modality's normalisation scale (:class:`~crossfuse.normalize.Standardize`), 1 where a
    modality is not standardised."""
    scales = {}
    for m, x in inputs.items():
        normalizer = model.normalizers[m] if m in model.normalizers else None
        scales[m] = normalizer.std.to(x) if isinstance(normalizer, Standardize) else torch.ones_like(x[0])
    return scales


@TRANSFERS.register("vada")
class VADA(DANN):
    """DANN plus the cluster assumption on the target, VADA (Shu et al., ICLR 2018, equation 6):

    ``L = L_y + L_d + lambda_s L_v(source) + lambda_t (L_c(target) + L_v(target))``,

    with ``L_d`` DANN's domain loss (:class:`~crossfuse.transfer.dann.DANN`, its defaults and warm-up),
    ``L_c`` the target's conditional entropy (:func:`conditional_entropy`: decision boundaries move away
    from dense target regions) and ``L_v`` the virtual adversarial KL (:func:`virtual_adversarial_kl`:
    the prediction may not change within a ball around each sample, which stops the entropy term from
    putting a boundary right next to the data). ``lambda_s = 1``, ``lambda_t = 10^-2`` as in the paper's
    digit tasks; the authors' domain weight ``10^-2`` is not taken, DANN's own weight (1, with its
    warm-up) is kept so that VADA is exactly DANN plus the two terms.

    ``radius`` is relative: the ball's radius is ``radius * sqrt(D)`` normalised units for ``D`` input
    features in all (the root-mean-square norm of a standardised sample is ``sqrt(D)``), so the ball is the
    same share of a sample's size whatever its dimension. The paper's 3.5 on 32x32x3 images in
    ``[-1, 1]``, whose pixels spread by about 0.5, is ``3.5 / (0.5 sqrt(3072)) = 0.126`` of that norm;
    the default is 0.125. One VAT power iteration costs two more forward passes and a backward pass per
    step, so a step takes about twice DANN's time.

    Parameters
    ----------
    source_weight, target_weight
        ``lambda_s`` and ``lambda_t``.
    radius
        The perturbation radius relative to ``sqrt(D)``.
    align, weight, gamma, hidden_dim
        DANN's (:class:`~crossfuse.transfer.dann.DANN`).
    """

    supports_regression = False
    regression_refusal = "VADA minimises the entropy of class predictions; a regression has none"

    def __init__(
        self,
        source_weight: float = 1.0,
        target_weight: float = 1e-2,
        radius: float = 0.125,
        align: str = "both",
        weight: float = 1.0,
        gamma: float = 10.0,
        hidden_dim: int = 64,
    ) -> None:
        super().__init__(align, weight, gamma, hidden_dim)
        if radius <= 0 or source_weight < 0 or target_weight < 0:
            raise ConfigError("vada needs radius > 0 and source_weight, target_weight >= 0")
        self.source_weight, self.target_weight, self.radius = source_weight, target_weight, radius

    def training_loss(self, model, source, labels, target, progress: float) -> torch.Tensor:
        outputs = run_model(model, source, target)
        source_loss = model.objective.loss(outputs.source_logits, labels, self.source_weights(source))
        alignment = self.weight * self.alignment_loss(outputs, progress)
        entropy = self.target_weight * conditional_entropy(outputs.target_logits)
        n_source = len(outputs.source_logits)
        kl = self.smoothness(model, {m: torch.cat([source[m], target[m]]) for m in sorted(source)})
        source_smoothness = self.source_weight * kl[:n_source].mean()
        target_smoothness = self.target_weight * kl[n_source:].mean()
        self.note_loss_parts(
            source=source_loss,
            alignment=alignment,
            target_entropy=entropy,
            smoothness=source_smoothness.detach() + target_smoothness.detach(),
        )
        return source_loss + alignment + entropy + source_smoothness + target_smoothness

    def smoothness(self, model: MultimodalModel, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Each row's :func:`virtual_adversarial_kl` of the model in evaluation mode (no dropout), the
        predictor that is scored and kept, with its radius ``radius * sqrt(D)``."""
        features = sum(x[0].numel() for x in inputs.values())
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                reference = model(inputs)
            return virtual_adversarial_kl(
                model, inputs, reference, input_scales(model, inputs), self.radius * features**0.5
            )
        finally:
            model.train(was_training)
