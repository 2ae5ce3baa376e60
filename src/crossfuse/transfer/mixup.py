from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from crossfuse.errors import ConfigError
from crossfuse.model import MultimodalModel
from crossfuse.parallel import draw_for_shard, forward_blocks, gather_shards
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import TransferMethod
from crossfuse.transfer.gradient_reversal import dann_lambda


def mix(source: torch.Tensor, target: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lambda x_s + (1 - lambda) x_t`` with one ``lambda`` per sample, broadcast over feature axes."""
    shape = (-1,) + (1,) * (source.dim() - 1)
    return lam.view(shape) * source + (1 - lam.view(shape)) * target


def mixed_targets(
    labels: torch.Tensor,
    target_logits: torch.Tensor,
    lam: torch.Tensor,
    mode: str,
    n_classes: int,
    source_shares: torch.Tensor | None = None,
) -> torch.Tensor:
    """``y~ = lambda onehot(y_s) + (1 - lambda) t`` per pair, with ``t = softmax(target_logits)``
    (``mode='pseudo'``), ``t = onehot(argmax target_logits)`` (``'hard'``), ``t`` the class-balanced hard
    pseudo-label (``'balanced'``, :func:`balanced_pseudo_labels`) or ``t = 0`` (``'none'``)."""
    mixed = lam[:, None] * F.one_hot(labels, n_classes).to(lam.dtype)
    if mode == "pseudo":
        mixed = mixed + (1 - lam[:, None]) * torch.softmax(target_logits, dim=-1)
    elif mode in ("hard", "balanced"):
        if mode == "hard":
            pseudo = target_logits.argmax(-1)
        else:
            shares = source_shares if source_shares is not None else label_shares(labels, n_classes)
            pseudo = balanced_pseudo_labels(target_logits, shares.to(target_logits))
        mixed = mixed + (1 - lam[:, None]) * F.one_hot(pseudo, n_classes).to(lam.dtype)
    return mixed


def balanced_pseudo_labels(target_logits: torch.Tensor, source_shares: torch.Tensor) -> torch.Tensor:
    """``argmax_c p_c(x) pi_c / pbar_c``: hard pseudo-labels with the model's predictions re-weighted so
    that, over the (global) batch, they fall into the classes in the source's shares ``pi`` rather than in
    the shares ``pbar = mean_batch p`` the model gives the target.

    A model moved to a new domain often piles its target predictions into a few classes; its hard
    pseudo-labels then teach the mixtures that target-like inputs belong to those classes, and the pile
    grows until every target row is one class (domain mixup on USPS -> MNIST: 9% accuracy). Dividing by
    the class's predicted share is the prior correction of Saerens et al. (Neural Computation 2002) run
    backwards, from the model's implied target prior to the source's; class-balanced self-training (Zou et
    al., ECCV 2018) balances pseudo-labels for the same reason. It assumes the target's classes come in
    about the source's shares (no strong label shift).
    """
    probabilities = torch.softmax(target_logits, dim=-1)
    predicted_shares = gather_shards(probabilities).mean(0)
    relative = (
        probabilities * source_shares / predicted_shares.clamp_min(torch.finfo(probabilities.dtype).tiny)
    )
    return relative.argmax(-1)


def label_shares(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Each class's share of the (global) batch's source labels, one added to every count (a prior for
    code that starts a method without the source's class shares)."""
    counts = gather_shards(F.one_hot(labels, n_classes).to(torch.float64)).sum(0) + 1
    return counts / counts.sum()


@TRANSFERS.register("mixup")
class DomainMixup(TransferMethod):
    """Domain mixup, the seed document's DMN (its section 3.2.2).

    Pairs each source sample with a target sample and mixes them,
    ``x~ = lambda x_s + (1 - lambda) x_t``, ``y~ = lambda y_s``, ``lambda ~ Beta(alpha, alpha)`` drawn per
    pair, in every modality with the same ``lambda``. The loss is

    ``L = CE(f(x_s), y_s) + weight * mean_i CE_soft(f(x~_i), y~_i)``. For regression the labels mix as
    values (:meth:`regression_loss`) and the losses are the objective's.

    The target's label is unknown, so how ``y~`` is completed matters (``target_labels``):

    - ``'none'`` keeps the seed's ``y~ = lambda y_s`` literally (``CE_soft = lambda CE(f(x~), y_s)``). It
      teaches the model to find the faint source component in target-dominated mixtures, and target
      accuracy collapses on AV-Digits.
    - ``'pseudo'`` adds the model's own detached soft prediction on the target sample,
      ``(1 - lambda) p(y | x_t)``, as virtual mixup training does (Mao et al., arXiv 1905.04215). The
      mixtures pull target predictions toward the class prior and they collapse.
    - ``'hard'`` adds the model's detached *argmax* on the target sample,
      ``(1 - lambda) onehot(argmax_c p(c | x_t))``: a pseudo-label that stays confident. When the model
      piles its target predictions into one class, the pile feeds itself: every target row ends in one
      class (USPS -> MNIST, all three seeds; AV-Digits with late fusion, one seed in three).
    - ``'balanced'`` (default) is ``'hard'`` with the predictions re-weighted to the source's class
      shares over the batch, ``argmax_c p_c(x_t) pi_c / pbar_c`` (:func:`balanced_pseudo_labels`).
      The README's *Mixup and the seed's label* gives the measurements behind this choice.

    The mixed loss is ramped in with DANN's ``lambda_p`` schedule (``warmup=True``), so the pseudo-labels
    come from a model that has first learned the source.

    ``space='inputs'`` mixes the raw inputs (as the seed writes it); ``space='features'`` mixes each
    modality's encoded features and fuses the mixture (the feature-space variant).

    Parameters
    ----------
    alpha
        Beta parameter (1 = uniform ``lambda``).
    space
        ``'inputs'`` or ``'features'``.
    weight
        Multiplier of the mixed loss.
    target_labels
        ``'balanced'``, ``'hard'``, ``'pseudo'`` or ``'none'`` (see above).
    source_dominant
        Use ``max(lambda, 1 - lambda)`` so every mixture is mostly source.
    warmup
        Ramp the mixed loss in with ``lambda_p = 2 / (1 + exp(-10 p)) - 1``.
    """

    uses_target = True

    def __init__(
        self,
        alpha: float = 1.0,
        space: str = "inputs",
        weight: float = 1.0,
        target_labels: str = "balanced",
        source_dominant: bool = False,
        warmup: bool = True,
    ) -> None:
        super().__init__(weight=weight)
        if target_labels not in ("pseudo", "hard", "balanced", "none"):
            raise ConfigError(
                f"mixup target_labels {target_labels!r}: use 'balanced', 'hard', 'pseudo' or 'none'"
            )
        self.target_labels, self.source_dominant, self.warmup = target_labels, source_dominant, warmup
        if alpha <= 0:
            raise ConfigError(f"mixup alpha must be > 0, got {alpha}")
        if space not in ("inputs", "features"):
            raise ConfigError(f"mixup space {space!r}: use 'inputs' or 'features'")
        self.alpha, self.space = alpha, space

    def sample_lambda(self, n: int) -> torch.Tensor:
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((n,))
        return torch.maximum(lam, 1 - lam) if self.source_dominant else lam

    def training_loss(
        self,
        model: MultimodalModel,
        source: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        target: Mapping[str, torch.Tensor],
        progress: float,
    ) -> torch.Tensor:
        n = labels.shape[0]
        target = {m: x[torch.arange(n, device=x.device) % x.shape[0]] for m, x in target.items()}
        lam = draw_for_shard(self.sample_lambda, n).to(labels.device)
        if self.space == "inputs":  # [source; target; mixed] as one pass; the target's only read
            mixed = {m: mix(source[m], target[m], lam) for m in source}
            source_logits, target_logits, mixed_logits = forward_blocks(
                model, [source, target, mixed], no_grad=[False, True, False]
            )
        else:
            features = model.encode({m: torch.cat([source[m], target[m]]) for m in sorted(source)})
            mixed = {m: torch.cat([f, mix(f[:n], f[n:], lam)]) for m, f in features.items()}
            logits = model.head(model.fuse(mixed))
            source_logits, target_logits, mixed_logits = logits[:n], logits[n : 2 * n], logits[2 * n :]
        ramp = dann_lambda(progress) if self.warmup else 1.0
        if model.objective.kind == "regression":
            return self.regression_loss(model, source_logits, target_logits, mixed_logits, labels, lam, ramp)
        soft = mixed_targets(
            labels,
            target_logits.detach(),
            lam,
            self.target_labels,
            mixed_logits.shape[1],
            self.source_class_shares,
        )
        mixed_loss = -(soft * F.log_softmax(mixed_logits, dim=-1)).sum(-1).mean()
        source_loss = model.objective.loss(source_logits, labels)
        mixup_loss = self.weight * ramp * mixed_loss
        self.note_loss_parts(source=source_loss, mixup=mixup_loss)
        return source_loss + mixup_loss

    def regression_loss(self, model, source_out, target_out, mixed_out, labels, lam, ramp) -> torch.Tensor:
        """Regression's mixed target, in the objective's standardised units:
        ``z~ = lambda z_s + (1 - lambda) z^_t``, ``z^_t`` the model's detached prediction on the target
        sample (``target_labels`` other than ``'none'``) or 0, the source mean (``'none'``)."""
        objective = model.objective
        k = getattr(objective, "n_targets", 1)  # a user's own objective may predict one value
        columns = slice(0, 1) if k == 1 else slice(0, k)
        lam = lam if k == 1 else lam[:, None]
        mixed_target = lam * objective.standardise(labels.to(mixed_out.dtype))
        if self.target_labels != "none":
            mixed_target = mixed_target + (1 - lam) * target_out[:, columns].squeeze(1).detach()
        difference = mixed_out[:, columns].squeeze(1) - mixed_target
        mixed_loss = (difference.pow(2) if objective.loss_kind == "mse" else difference.abs()).mean()
        source_loss, mixup_loss = objective.loss(source_out, labels), self.weight * ramp * mixed_loss
        self.note_loss_parts(source=source_loss, mixup=mixup_loss)
        return source_loss + mixup_loss
