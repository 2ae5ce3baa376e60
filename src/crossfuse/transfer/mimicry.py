"""Cross-modal mimicry (Jaritz, Vu, de Charette, Wirbel & Pérez, "xMUDA: Cross-Modal Unsupervised
Domain Adaptation for 3D Semantic Segmentation", CVPR 2020)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import StepOutputs, TransferMethod, run_model


def mimicry_loss(mimic_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """``mean_i KL(p_i || q_i)`` with ``p = softmax(teacher)`` detached (the other modalities' prediction)
    and ``q = softmax(mimic)``: the mimic head learns to predict what the others predict."""
    teacher = torch.softmax(teacher_logits.detach(), dim=1)
    return F.kl_div(F.log_softmax(mimic_logits, dim=1), teacher, reduction="batchmean")


@TRANSFERS.register("mimicry")
class CrossModalMimicry(TransferMethod):
    """Each modality ``m`` gets a main head ``g_m`` and a mimicry head ``h_m`` on its encoding ``f_m``.

    ``L = L_y(fused) + sum_m CE(g_m(f_m^s), y_s) + lambda_s sum_m KL(P_{-m}(x^s) || softmax h_m(f_m^s))
    + lambda_t sum_m KL(P_{-m}(x^t) || softmax h_m(f_m^t))``

    with ``P_{-m}`` the mean of the other modalities' main-head probabilities, detached (with two
    modalities, xMUDA's ``KL(P_2D || Q_3D) + KL(P_3D || Q_2D)``). On the unlabelled target each modality's
    encoder is pulled toward features from which its mimic head can reproduce what the other modalities
    see, so the modalities teach each other where labels are missing; the separate mimic head keeps the
    main head of each modality from being dragged toward the other modality's mistakes.

    It needs per-modality encoders and at least two modalities: early fusion, which fuses the raw inputs,
    has no encoding of one modality to attach heads to, and is refused.

    Parameters
    ----------
    source_weight, target_weight
        ``lambda_s`` and ``lambda_t``.
    """

    min_modalities = 2

    supports_regression = False
    regression_refusal = "cross-modal mimicry matches class distributions; a regression has none"

    def __init__(self, source_weight: float = 1.0, target_weight: float = 0.1) -> None:
        super().__init__(align="modalities")
        self.source_weight, self.target_weight = source_weight, target_weight
        self.heads = nn.ModuleDict()
        self.mimics = nn.ModuleDict()

    def setup(self, model, feature_dims: Mapping[str, int]) -> None:
        from crossfuse.fusion import FusionModule

        modalities = [m for m in sorted(feature_dims) if m != "fused"]
        if isinstance(model.fusion, FusionModule) and not model.fusion.uses_encoders:
            raise ConfigError("mimicry needs per-modality encoders; early fusion fuses the raw inputs")
        if len(modalities) < 2:
            raise ConfigError("mimicry needs at least two modalities")
        classes = model.n_outputs
        self.heads = nn.ModuleDict({m: nn.Linear(feature_dims[m], classes) for m in modalities})
        self.mimics = nn.ModuleDict({m: nn.Linear(feature_dims[m], classes) for m in modalities})

    def cross_modal(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``sum_m KL(P_{-m} || softmax h_m(f_m))`` over one batch's encodings."""
        probabilities = {m: torch.softmax(self.heads[m](f), dim=1) for m, f in features.items()}
        losses = []
        for m, f in features.items():
            others = torch.stack([p for k, p in probabilities.items() if k != m]).mean(0)
            losses.append(mimicry_loss(self.mimics[m](f), torch.log(others.clamp_min(1e-12))))
        return torch.stack(losses).sum()

    def training_loss(self, model, source, labels, target, progress: float) -> torch.Tensor:
        outputs: StepOutputs = run_model(model, source, target)
        source_loss = model.objective.loss(outputs.source_logits, labels)
        loss, heads = source_loss, []
        for m, f in outputs.source_features.items():
            heads.append(F.cross_entropy(self.heads[m](f), labels))
            loss = loss + heads[-1]
        source_mimicry = self.source_weight * self.cross_modal(outputs.source_features)
        target_mimicry = self.target_weight * self.cross_modal(outputs.target_features)
        self.note_loss_parts(
            source=source_loss,
            modality_heads=torch.stack(heads).detach().sum(),
            mimicry=source_mimicry.detach() + target_mimicry.detach(),
        )
        return loss + source_mimicry + target_mimicry
