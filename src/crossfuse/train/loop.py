"""The two-stream training loop: labelled source batches, unlabelled target batches, label-free selection."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from crossfuse.evaluation.selection import SELECTION_CRITERIA, selection_scores
from crossfuse.model import MultimodalModel
from crossfuse.transfer.base import TransferMethod

Arrays = Mapping[str, np.ndarray]


@dataclass
class TrainSettings:
    """Optimisation settings; the defaults are meant to work unchanged on small and medium data sets.

    ``epochs`` is a ceiling for source-only training, which stops when the selection score has not improved
    for ``patience`` epochs. Methods that use the target stream follow a schedule over the whole run (the
    DANN warm-up, the learning-rate decay), so by default (``early_stopping=None``) they run every epoch.
    Either way the checkpoint with the best score is kept, ties going to the later epoch: a saturated
    source-validation accuracy then picks the most trained (most adapted) model. ``batch_size`` is capped at a quarter of the
    source training set so small data sets still get several steps per epoch.
    """

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8
    selection: str = "source-val"
    min_steps_per_epoch: int = 50
    early_stopping: bool | None = None


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0


def to_tensors(inputs: Arrays, rows: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    return {
        m: torch.from_numpy(np.ascontiguousarray(x if rows is None else x[rows])) for m, x in inputs.items()
    }


@torch.no_grad()
def predict(model: MultimodalModel, inputs: Arrays, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities ``(N, C)`` and fused features ``(N, d)`` in evaluation mode."""
    was_training = model.training
    model.eval()
    n = len(next(iter(inputs.values())))
    probabilities, features = [], []
    for start in range(0, n, batch_size):
        batch = to_tensors(inputs, np.arange(start, min(n, start + batch_size)))
        fused = model.fuse(model.encode(batch))
        probabilities.append(torch.softmax(model.head(fused), dim=-1).numpy())
        features.append(fused.numpy())
    model.train(was_training)
    return np.concatenate(probabilities), np.concatenate(features)


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(1) == labels).mean())


def train(
    model: MultimodalModel,
    method: TransferMethod,
    source: tuple[Arrays, np.ndarray],
    source_val: tuple[Arrays, np.ndarray],
    target: Arrays,
    target_test: tuple[Arrays, np.ndarray] | None,
    settings: TrainSettings,
    seed: int,
    log: Callable[[str], None] = print,
    val_weights: np.ndarray | None = None,
) -> TrainResult:
    """Train ``model`` with ``method``; leave in it the weights of the best epoch by ``settings.selection``.

    ``target_test`` labels are used only to record the oracle accuracy of every epoch in the history;
    they never influence training or the choice of epoch. ``val_weights`` (``p_t / p_s`` of the source
    validation rows) enable the ``iwv`` and ``dev`` criteria.
    """
    if settings.selection not in SELECTION_CRITERIA:
        raise ValueError(f"unknown selection {settings.selection!r}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    early_stopping = (
        settings.early_stopping if settings.early_stopping is not None else not method.uses_target
    )
    source_inputs, source_labels = source
    n_source = len(source_labels)
    n_target = len(next(iter(target.values())))
    batch = max(2, min(settings.batch_size, n_source // 4 or 2))
    steps_per_epoch = max(math.ceil(n_source / batch), settings.min_steps_per_epoch)
    total_steps = steps_per_epoch * settings.epochs
    labels_tensor = torch.from_numpy(source_labels)
    parameters = list(model.parameters()) + list(method.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=total_steps, eta_min=settings.lr / 20
    )

    def batches(n: int):
        while True:
            yield from torch.randperm(n, generator=generator).split(batch)

    source_stream, target_stream = batches(n_source), batches(n_target)
    best_score, best_state, best_epoch, stale = -math.inf, None, 0, 0
    history: list[dict] = []
    started = time.perf_counter()
    step = 0
    model.train()
    method.train()
    for epoch in range(1, settings.epochs + 1):
        losses = []
        for _ in range(steps_per_epoch):
            rows = next(source_stream)
            if len(rows) < 2:
                rows = next(source_stream)
            target_rows = next(target_stream)
            loss = method.training_loss(
                model,
                to_tensors(source_inputs, rows.numpy()),
                labels_tensor[rows],
                to_tensors(target, target_rows.numpy()),
                progress=step / total_steps,
            )
            loss = loss + model.penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
        scores = selection_scores(model, source_val, target, predict, val_weights)
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), **scores}
        if target_test is not None:
            record["target_accuracy"] = accuracy(predict(model, target_test[0])[0], target_test[1])
        history.append(record)
        score = scores[settings.selection]
        improved = score > best_score + 1e-9
        stale = 0 if improved else stale + 1
        if score >= best_score - 1e-9:  # ties go to the later, longer-trained epoch
            best_score, best_epoch = max(score, best_score), epoch
            best_state = copy.deepcopy(model.state_dict())
        log(
            f"epoch {epoch:3d}  loss {record['train_loss']:.4f}"
            + f"  source-val acc {scores['source_val_accuracy']:.4f}"
            + (f"  target acc {record['target_accuracy']:.4f}" if "target_accuracy" in record else "")
            + ("  *" if improved else "")
        )
        if early_stopping and stale >= settings.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_epoch, len(history), history, time.perf_counter() - started)
