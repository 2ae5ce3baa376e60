"""Importance-weighted DANN (Tachet des Combes, Zhao, Wang & Gordon, "Domain Adaptation with Conditional
Distribution Matching and Generalized Label Shift", NeurIPS 2020)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from crossfuse.errors import ConfigError
from crossfuse.evaluation.warnings import collapse_limit
from crossfuse.parallel import gather_shards
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import run_model
from crossfuse.transfer.dann import DANN

#: How much heavier than the least-squares rows the equality ``p^T w = 1`` weighs in the NNLS system.
EQUALITY_WEIGHT = 1e3


def class_ratios(confusion: np.ndarray, target_shares: np.ndarray) -> np.ndarray:
    """``w = q / p``, the ratio of target to source class shares, from a classifier's statistics (BBSE).

    ``confusion[i, j] = P_s(prediction i, label j)`` on the source and ``target_shares[i] = P_t(prediction
    i)``. When the classes' conditionals ``p(x | y)`` are the same in both domains, ``P_t(pred i) =
    sum_j P_s(pred i | y = j) q_j = sum_j confusion[i, j] w_j``, so ``w`` solves

    ``min_w ||C w - mu||^2``  subject to  ``w >= 0``, ``p^T w = 1``

    (``p_j = sum_i C[i, j]``, the source's class shares: the target's shares ``p_j w_j`` sum to one),
    Lipton, Wang & Smola, "Detecting and Correcting for Label Shift with Black Box Predictors", ICML 2018,
    with the constraints of the paper above. Solved as non-negative least squares (scipy's Lawson-Hanson)
    with the equality as a heavily weighted extra row, then scaled to meet it exactly. A class never seen
    on the source keeps ``w = 1``.
    """
    from scipy.optimize import nnls

    confusion = np.asarray(confusion, dtype=np.float64)
    source_shares = confusion.sum(0)
    system = np.vstack([confusion, EQUALITY_WEIGHT * source_shares[None]])
    wanted = np.r_[np.asarray(target_shares, dtype=np.float64), EQUALITY_WEIGHT]
    ratios, _ = nnls(system, wanted)
    ratios[source_shares == 0] = 1.0
    return ratios / max(float(source_shares @ ratios), 1e-12)


def capped_ratios(ratios: np.ndarray, source_shares: np.ndarray) -> np.ndarray:
    """``ratios`` with no class's target share ``p_j w_j`` above the collapse flag's limit
    (:func:`~crossfuse.evaluation.warnings.collapse_limit` of the source's largest share): a capped
    share is set to the limit and the excess shared among the other classes in proportion to their
    shares (equally, when they have none), until none is above it.

    Why: the estimate feeds on the model's own target predictions, and where those are poor (USPS ->
    MNIST) it ran away until every target row was predicted as one class. The library reads a share past
    this limit as a collapse, so the estimate may not claim one."""
    shares = np.asarray(source_shares, dtype=np.float64) * ratios
    limit = collapse_limit(float(np.max(source_shares)))
    capped = np.zeros(len(shares), dtype=bool)
    while (shares > limit + 1e-12).any() and not capped.all():
        capped |= shares > limit
        free = shares[~capped].sum()
        shares[capped] = limit
        rest = 1 - limit * capped.sum()
        if rest <= 0:
            break
        if free <= 0:
            shares[~capped] = rest / (~capped).sum()
        else:
            shares[~capped] *= rest / free
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(source_shares > 0, shares / source_shares, ratios)


@TRANSFERS.register("iwdan")
class ImportanceWeightedDANN(DANN):
    """DANN whose source rows count by their class's estimated share ratio ``w_y = q_t(y) / p_s(y)``.

    Matching the marginals of source and target features assumes that the classes keep their shares: when
    the target's shares differ (label shift), DANN aligns target rows onto the wrong classes. IWDAN matches
    the target to the source *re-weighted to the target's class shares*:

    ``L = sum_i w_{y_i} CE(f(x_i), y_i) / sum_i w_{y_i} + weight * L_d^w``,
    ``L_d^w = mean_spaces [mean_S w_{y_i} BCE(G_d(R(f_i)), 0) + mean_T BCE(G_d(R(f_j)), 1)] / 2``

    (``R`` DANN's gradient reversal with its warm-up). ``w`` starts at 1 (plain DANN). Every step adds the
    batch's soft source confusion ``sum_i softmax(f(x_i)) onehot(y_i)^T`` and its mean target prediction to
    running sums; every ``update_every`` steps :func:`class_ratios` solves for ``w`` from them,
    :func:`capped_ratios` keeps every estimated target share within the collapse flag's limit, and
    ``w <- momentum w + (1 - momentum) w_new`` (the paper's moving average, 0.5), the sums then starting
    again. Under torchrun the sums run over the global batch (:func:`~crossfuse.parallel.gather_shards`),
    so every process holds the same ``w``. The estimated target class shares are ``p_s * w``
    (:attr:`target_class_shares`).

    Parameters
    ----------
    align, weight, gamma, hidden_dim
        As :class:`~crossfuse.transfer.dann.DANN`.
    update_every
        Steps between two estimates of ``w``: 10, a fifth of the shortest epoch, so that the estimate keeps
        up with the alignment (a label shift that DANN has already aligned wrongly is hard to undo).
    momentum
        Share of the previous ``w`` kept at each estimate.
    """

    supports_regression = False
    class_weight_refusal = "it weighs the source's classes itself, by their estimated target shares"
    regression_refusal = "IWDAN estimates the target's class shares from probabilities; a regression has none"

    def __init__(
        self,
        align: str = "both",
        weight: float = 1.0,
        gamma: float = 10.0,
        hidden_dim: int = 64,
        update_every: int = 10,
        momentum: float = 0.5,
    ) -> None:
        super().__init__(align, weight, gamma, hidden_dim)
        if update_every < 1 or not 0 <= momentum < 1:
            raise ConfigError(
                f"iwdan needs update_every >= 1 and 0 <= momentum < 1 (got {update_every}, {momentum})"
            )
        self.update_every, self.momentum = update_every, momentum
        self.row_weights: torch.Tensor | None = None

    def setup(self, model, feature_dims: Mapping[str, int]) -> None:
        super().setup(model, feature_dims)
        k = model.n_outputs
        # buffers: they are checkpointed with the method, so a resumed run continues the same estimate
        self.register_buffer("class_weights", torch.ones(k))
        self.register_buffer("confusion_sum", torch.zeros(k, k, dtype=torch.float64))
        self.register_buffer("target_prediction_sum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(3, dtype=torch.float64))  # source rows, target rows, steps

    @property
    def target_class_shares(self) -> torch.Tensor:
        """``p_s * w`` scaled to sum to one (``p_s`` over all source training rows, ``w`` fitted on the
        batches'): the target's class shares as the current weights estimate them."""
        source = self.source_class_shares
        if source is None:
            source = torch.full_like(self.class_weights, 1 / len(self.class_weights))
        shares = source.to(self.class_weights) * self.class_weights
        return shares / shares.sum().clamp_min(1e-12)

    def run_metrics(self) -> dict[str, object]:
        """``estimated_target_class_shares``: :attr:`target_class_shares` at the end of training, in the
        order of the model's classes (``model.json``)."""
        return {"estimated_target_class_shares": [round(float(v), 4) for v in self.target_class_shares]}

    @torch.no_grad()
    def record(self, source_logits: torch.Tensor, labels: torch.Tensor, target_logits: torch.Tensor) -> None:
        """Add the global batch's statistics; every ``update_every`` steps, update ``w`` from them."""
        k = self.class_weights.shape[0]
        source = gather_shards(torch.softmax(source_logits.detach(), -1)).double()
        known = gather_shards(labels.to(source.dtype)).long()
        target = gather_shards(torch.softmax(target_logits.detach(), -1)).double()
        self.confusion_sum += source.T @ F.one_hot(known, k).to(source.dtype)
        self.target_prediction_sum += target.sum(0)
        self.counts += torch.tensor([len(source), len(target), 1.0], dtype=self.counts.dtype)
        if int(self.counts[2]) % self.update_every:
            return
        confusion = (self.confusion_sum / self.counts[0]).cpu().numpy()
        estimate = capped_ratios(
            class_ratios(confusion, (self.target_prediction_sum / self.counts[1]).cpu().numpy()),
            confusion.sum(0),
        )
        estimate = torch.as_tensor(estimate, dtype=self.class_weights.dtype, device=self.class_weights.device)
        self.class_weights.mul_(self.momentum).add_((1 - self.momentum) * estimate)
        self.confusion_sum.zero_()
        self.target_prediction_sum.zero_()
        self.counts.zero_()

    def source_row_weights(self) -> torch.Tensor | None:
        """The class weights of this step's source rows (set by :meth:`training_loss`)."""
        return self.row_weights

    def training_loss(self, model, source, labels: torch.Tensor, target, progress: float) -> torch.Tensor:
        outputs = run_model(model, source, target)
        self.row_weights = self.class_weights[labels]
        try:
            loss = model.objective.loss(outputs.source_logits, labels, self.row_weights)
            alignment = self.weight * self.alignment_loss(outputs, progress)
        finally:  # outside a step, the domain loss is DANN's
            self.row_weights = None
        self.record(outputs.source_logits, labels, outputs.target_logits)
        self.note_loss_parts(source=loss, alignment=alignment)
        return loss + alignment
