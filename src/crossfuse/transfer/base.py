"""The contract every transfer method implements, and the source-only baseline.

A method's lifecycle, each hook a no-op unless overridden, run in this order by
:func:`crossfuse.train.lifecycle.start_method`, the trainer and the runner:

1. :meth:`TransferMethod.prepare` sees the training rows (inputs only) once before training
   (importance weighting fits its density ratio there);
2. :meth:`TransferMethod.setup` builds parameters that depend on the model's feature sizes (DANN's
   domain classifiers);
3. every step, :meth:`TransferMethod.training_loss`: by default
   ``L = sum_i w_i l(f(x_i^s), y_i^s) / sum_i w_i + weight * alignment_loss(outputs, progress)``, with
   ``l`` the model objective's loss (cross-entropy, or squared error for regression), so a
   method usually overrides only :meth:`TransferMethod.alignment_loss` (CORAL, MMD, DANN) or
   :meth:`TransferMethod.source_weights` (importance weighting);
4. :meth:`TransferMethod.after_training` gets the model of the kept epoch and, for a method that declares
   ``needs_target_shots``, a few labelled target rows (fine-tuning).

Alignment acts on the spaces named by ``align``: ``'fused'`` (the fused representation),
``'modalities'`` (each modality's encoded features) or ``'both'``. Which default each built-in method
has comes from ``benchmarks/alignment_space.py``; the README gives the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.model import MultimodalModel
from crossfuse.registry import TRANSFERS

ALIGN_CHOICES = ("fused", "modalities", "both")


@dataclass
class StepOutputs:
    """What the model produced for one source and one target batch."""

    source_features: dict[str, torch.Tensor]
    target_features: dict[str, torch.Tensor]
    source_fused: torch.Tensor
    target_fused: torch.Tensor
    source_logits: torch.Tensor
    target_logits: torch.Tensor

    def aligned_pairs(self, align: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``space -> (source, target)`` features for the spaces that ``align`` names."""
        pairs = {}
        if align in ("modalities", "both"):
            for m in sorted(self.source_features):
                pairs[m] = (self.source_features[m], self.target_features[m])
        if align in ("fused", "both"):
            pairs["fused"] = (self.source_fused, self.target_fused)
        return pairs


def run_model(model: MultimodalModel, source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]):
    """One forward pass over the concatenated batches (so batch-norm-free models see both at once)."""
    n_source = next(iter(source.values())).shape[0]
    joined = {m: torch.cat([source[m], target[m]]) for m in sorted(source)}
    features = model.encode(joined)
    fused = model.fuse(features)
    logits = model.head(fused)
    return StepOutputs(
        {m: f[:n_source] for m, f in features.items()},
        {m: f[n_source:] for m, f in features.items()},
        fused[:n_source],
        fused[n_source:],
        logits[:n_source],
        logits[n_source:],
    )


class TransferMethod(nn.Module):
    """Base class of transfer methods; subclass it and override :meth:`alignment_loss` to write one.

    ``outputs`` (:class:`StepOutputs`) holds ``source_fused`` / ``target_fused`` (the fused
    representations of the two batches), ``source_features`` / ``target_features`` (each modality's
    encoding) and the logits; :meth:`StepOutputs.aligned_pairs` gives the spaces ``align`` names.

    Class attributes: ``uses_target`` (the step runs the model on the target batch; ``False`` for
    methods that train on the source alone), ``needs_target_shots`` (the run sets aside a few labelled
    target rows for :meth:`after_training`), ``domain_generalization`` (the method never sees a target
    row before evaluation: no target training stream, every target row scored, ``--target`` optional) and
    ``recipe`` (run settings the method changes unless the user sets them, e.g. ``{'weight_averaging':
    'swa'}``).

    Several source domains stay apart: ``n_source_domains`` is set before :meth:`setup`, and before each
    step the trainer sets ``batch_source_domains``, the ``(B,)`` index (``0 .. n_source_domains - 1``) of
    each source row's domain, in the order of ``--source`` (skada's ``sample_domain`` minus one), and
    ``batch_source_rows``, the batch's row indices into the source training rows. A classifier's
    ``source_class_shares`` (``(C,)``, the share of each class among the source training rows) is set
    before :meth:`setup` too.

    Parameters
    ----------
    align
        Where an alignment loss acts: ``'fused'``, ``'modalities'`` or ``'both'``.
    weight
        Multiplier of the alignment loss.
    """

    uses_target = True
    needs_target_shots = False
    #: Whether training stops early when the selection score stalls; ``None``: when the method does not
    #: use the target (a method with a schedule over the whole run, such as a warm-up, follows it).
    stops_early: bool | None = None
    domain_generalization = False
    #: The fewest modalities the method's maths needs (suites leave it out on data with fewer).
    min_modalities = 1
    recipe: Mapping[str, object] = {}
    n_source_domains = 1
    batch_source_domains: torch.Tensor | None = None
    #: The indices, into the source training rows, of this step's source batch (set by the trainer).
    batch_source_rows: torch.Tensor | None = None
    #: ``(C,)`` share of each class among the source training rows (a classifier's; set at the start).
    source_class_shares: torch.Tensor | None = None
    #: Why the method cannot take ``--class-weight balanced`` (empty: it can).
    class_weight_refusal = ""
    #: Whether the method's maths holds for a regression objective (and, if not, why).
    supports_regression = True
    regression_refusal = ""
    #: The named terms of the latest training loss, detached (see :meth:`note_loss_parts`).
    loss_parts: Mapping[str, torch.Tensor] = {}
    #: Share of the schedule at whose first step the trainer restarts the optimiser (Adam's moments and
    #: step count back to zero; the learning-rate schedule goes on), or ``None``: for a loss whose
    #: scale jumps there, which the moments of the earlier gradients would misjudge.
    optimizer_restart: float | None = None

    def __init__(self, align: str = "fused", weight: float = 1.0) -> None:
        super().__init__()
        if align not in ALIGN_CHOICES:
            raise ConfigError(f"align {align!r}: choose from {', '.join(ALIGN_CHOICES)}")
        self.align, self.weight = align, weight

    def source_domains(self, n: int, device: torch.device) -> torch.Tensor:
        """The ``(n,)`` domain index of each row of this step's source batch (all 0 for a batch the
        trainer did not draw, e.g. in a test)."""
        if self.batch_source_domains is None or self.batch_source_domains.shape[0] != n:
            return torch.zeros(n, dtype=torch.long, device=device)
        return self.batch_source_domains.to(device)

    def prepare(self, source: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray], seed: int) -> None:
        """See the training rows' inputs (source and target, no labels) once before training."""

    def setup(self, model: MultimodalModel, feature_dims: Mapping[str, int]) -> None:
        """Build any parameters that depend on the model's feature sizes (``space -> dim``)."""

    def after_training(
        self,
        model: MultimodalModel,
        shots: tuple[Mapping[str, np.ndarray], np.ndarray] | None,
        source: tuple[Mapping[str, np.ndarray], np.ndarray],
        lr: float,
        seed: int,
        target: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Change the trained model (of the kept epoch) before it is evaluated; ``shots`` are the labelled
        target rows set aside when the method ``needs_target_shots``, ``target`` the unlabelled target
        training rows."""

    def run_metrics(self) -> dict[str, object]:
        """Figures the method learnt about the data, written into the run's ``metrics.json`` (IWDAN's
        estimate of the target's class shares); none by default."""
        return {}

    def note_loss_parts(self, **parts: torch.Tensor) -> None:
        """Keep the terms that the training loss just added up, as they were added (weights applied), so
        that the trainer can record each one's mean per epoch beside the total (``train_loss_parts`` in the
        history: whether a domain classifier is still confused, say, or an alignment term has gone to
        zero). Detached: recording them changes no number of the step."""
        self.loss_parts = {name: value.detach() for name, value in parts.items()}

    def source_weights(self, source: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """Per-sample weights of the source loss, or ``None`` for uniform."""
        return None

    def alignment_loss(self, outputs: StepOutputs, progress: float) -> torch.Tensor:
        """Loss added to the classification loss; ``progress`` runs from 0 to 1 over training."""
        return outputs.source_logits.new_zeros(())

    def training_loss(
        self,
        model: MultimodalModel,
        source: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        target: Mapping[str, torch.Tensor],
        progress: float,
    ) -> torch.Tensor:
        if not self.uses_target:
            logits = model(source)
            loss = model.objective.loss(logits, labels, self.source_weights(source))
            self.note_loss_parts(source=loss)
            return loss
        outputs = run_model(model, source, target)
        loss = model.objective.loss(outputs.source_logits, labels, self.source_weights(source))
        alignment = self.weight * self.alignment_loss(outputs, progress)
        self.note_loss_parts(source=loss, alignment=alignment)
        return loss + alignment


@TRANSFERS.register("source-only")
class SourceOnly(TransferMethod):
    """Train on labelled source data only: the baseline every transfer method is measured against."""

    uses_target = False

    def __init__(self) -> None:
        super().__init__()
