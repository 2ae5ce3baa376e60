from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from crossfuse.model import MultimodalModel
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import TransferMethod


@TRANSFERS.register("finetune")
class FineTune(TransferMethod):
    """Model transfer: train on the source (as source-only), then fine-tune on ``K`` labelled target
    samples per class (``--target-shots K``), which are then excluded from evaluation.

    The second phase minimises ``CE(f(x_t), y_t)`` over the K-shot set for ``steps`` steps of AdamW at
    ``lr_scale`` times the source learning rate, mixing in an equal-sized source batch each step so the
    few target labels do not erase what the source taught. With ``freeze_encoders=True`` only the fusion
    and head move. No target labels beyond the K shots are used, and the last step's model is kept (there
    is no label-free signal to select on after the shots are spent).

    Parameters
    ----------
    steps
        Fine-tuning steps.
    lr_scale
        Fine-tuning learning rate relative to the source phase.
    freeze_encoders
        Keep the per-modality encoders fixed.
    """

    uses_target = False
    needs_target_shots = True

    def __init__(self, steps: int = 200, lr_scale: float = 0.3, freeze_encoders: bool = False):
        super().__init__()
        self.steps, self.lr_scale, self.freeze_encoders = steps, lr_scale, freeze_encoders

    def after_training(
        self,
        model: MultimodalModel,
        shots: tuple[Mapping[str, np.ndarray], np.ndarray] | None,
        source: tuple[Mapping[str, np.ndarray], np.ndarray],
        lr: float,
        seed: int,
        target: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """The fine-tuning phase on the labelled target ``shots``."""
        if shots is None:
            return
        generator = torch.Generator().manual_seed(seed + 1)
        device = next(model.parameters()).device
        shot_inputs = {m: torch.from_numpy(x).to(device) for m, x in shots[0].items()}
        shot_labels = torch.from_numpy(shots[1]).to(device)
        source_inputs = {m: torch.from_numpy(x).to(device) for m, x in source[0].items()}
        source_labels = torch.from_numpy(source[1]).to(device)
        if self.freeze_encoders:
            for parameter in model.encoders.parameters():
                parameter.requires_grad_(False)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=lr * self.lr_scale)
        model.train()
        n_shots = len(shot_labels)
        for _ in range(self.steps):
            rows = torch.randint(len(source_labels), (n_shots,), generator=generator).to(device)
            loss = model.objective.loss(model(shot_inputs), shot_labels)
            loss = loss + model.objective.loss(
                model({m: x[rows] for m, x in source_inputs.items()}), source_labels[rows]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        model.eval()
