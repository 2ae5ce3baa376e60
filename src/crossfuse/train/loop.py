"""The two-stream training loop: labelled source batches, unlabelled target batches, label-free selection."""

from __future__ import annotations

import copy
import math
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from crossfuse.errors import CrossfuseError
from crossfuse.evaluation.selection import SELECTION_CRITERIA, selection_scores, selection_tolerance
from crossfuse.model import MultimodalModel
from crossfuse.parallel import batch_shard
from crossfuse.train.checkpoint import CHECKPOINT, load_checkpoint, prefixed, save_checkpoint
from crossfuse.transfer.base import TransferMethod

Arrays = Mapping[str, np.ndarray]


@dataclass
class TrainSettings:
    """Optimisation settings; the defaults are meant to work unchanged on small and medium data sets.

    ``epochs`` is a ceiling for source-only training, which stops when the selection score has not improved
    for ``patience`` epochs. Methods that use the target stream follow a schedule over the whole run (the
    DANN warm-up, the learning-rate decay), so by default (``early_stopping=None``) they run every epoch.
    Either way the latest epoch whose score is within the criterion's tolerance of the best is kept
    (one standard error for source-validation accuracy, exact ties otherwise): a saturated
    source-validation accuracy then picks the most trained (most adapted) model. ``batch_size`` is capped at
    a quarter of the source training set and an epoch has at least ``min_steps_per_epoch`` steps, so small
    data sets still get enough updates.
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


def to_tensors(
    inputs: Arrays, rows: np.ndarray | None = None, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """The chosen rows of each modality as tensors on ``device``."""
    return {
        m: torch.from_numpy(np.ascontiguousarray(x if rows is None else x[rows])).to(device)
        for m, x in inputs.items()
    }


def device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def predict(model: MultimodalModel, inputs: Arrays, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities ``(N, C)`` and fused features ``(N, d)`` in evaluation mode."""
    was_training = model.training
    model.eval()
    n = len(next(iter(inputs.values())))
    device = device_of(model)
    probabilities, features = [], []
    for start in range(0, n, batch_size):
        batch = to_tensors(inputs, np.arange(start, min(n, start + batch_size)), device)
        fused = model.fuse(model.encode(batch))
        probabilities.append(torch.softmax(model.head(fused), dim=-1).cpu().numpy())
        features.append(fused.cpu().numpy())
    model.train(was_training)
    return np.concatenate(probabilities), np.concatenate(features)


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float | None:
    """Share of rows whose most probable class is the label, over the rows that have one (label ``>= 0``);
    ``None`` when none has."""
    known = labels >= 0
    if not known.any():
        return None
    return float((probabilities[known].argmax(1) == labels[known]).mean())


class TrainingDiverged(CrossfuseError):
    """The training loss became NaN or infinite; the run stops instead of reporting a broken model."""


class Interrupted(Exception):
    """Training stopped on SIGTERM or SIGINT after writing a checkpoint; the same command resumes it."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class StopRequests:
    """Turns SIGTERM and SIGINT into a flag that the loop checks between steps (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> StopRequests:
        import threading

        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        self.received = number

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


class TrainingObjective(nn.Module):
    """Model and transfer method as one module whose forward is the training loss, so that
    DistributedDataParallel sees every parameter that a step uses."""

    def __init__(self, model: MultimodalModel, method: TransferMethod) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, source, labels, target, progress: float) -> torch.Tensor:
        return self.method.training_loss(self.model, source, labels, target, progress) + self.model.penalty()


def epoch_plan(n: int, batch: int, steps: int, seed: int, epoch: int, stream: int) -> torch.Tensor:
    """Row indices ``(steps, batch)`` of one epoch: consecutive permutations from a generator seeded by
    (seed, epoch, stream), so any epoch can be replayed exactly on resume."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 2 + stream)
    needed = steps * batch
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(math.ceil(needed / n))])
    return order[:needed].view(steps, batch)


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
    checkpoint_dir: Path | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``model`` with ``method``; leave in it the weights of the best epoch by ``settings.selection``.

    ``target_test`` labels are used only to record the oracle accuracy of every epoch in the history;
    they never influence training or the choice of epoch. ``val_weights`` (``p_t / p_s`` of the source
    validation rows) enable the ``iwv`` and ``dev`` criteria.

    With ``checkpoint_dir``, a checkpoint is written there after every epoch and when SIGTERM or SIGINT
    arrives (then :class:`Interrupted` is raised); a checkpoint found there is resumed, and the result is
    the same as an uninterrupted run. Under ``torch.distributed`` each of the N processes takes every
    N-th row of the same global batch and DistributedDataParallel averages the gradients; random draws and
    batch statistics are made global (:mod:`crossfuse.parallel`), so N processes train the model one
    process would, up to floating-point order. Only rank 0 writes. ``on_step(done, total)`` follows progress
    (a progress bar), ``total`` being the most steps the run can take.
    """
    if settings.selection not in SELECTION_CRITERIA:
        raise ValueError(f"unknown selection {settings.selection!r}")
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(seed)
    early_stopping = (
        settings.early_stopping if settings.early_stopping is not None else not method.uses_target
    )
    source_inputs, source_labels = source
    n_source = len(source_labels)
    n_validation = len(source_val[1])
    n_target = len(next(iter(target.values())))
    batch = max(2 * world, min(settings.batch_size, n_source // 4 or 2))
    batch -= batch % world
    steps_per_epoch = max(math.ceil(n_source / batch), settings.min_steps_per_epoch)
    total_steps = steps_per_epoch * settings.epochs
    device = device_of(model)
    labels_tensor = torch.from_numpy(source_labels).to(device)
    objective = TrainingObjective(model, method)
    if distributed:
        trainer = DistributedDataParallel(objective, device_ids=[device] if device.type == "cuda" else None)
    else:
        trainer = objective
    optimizer = torch.optim.AdamW(objective.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=total_steps, eta_min=settings.lr / 20
    )

    state = {
        "epoch": 0,
        "step_in_epoch": 0,
        "losses": [],
        "best_score": -math.inf,
        "best_epoch": 0,
        "stale": 0,
        "history": [],
        "seconds": 0.0,
    }
    best_state = None
    checkpoint = checkpoint_dir / CHECKPOINT if checkpoint_dir is not None else None
    if checkpoint is not None and checkpoint.exists():
        tensors, state, optimizer_state = load_checkpoint(checkpoint)
        objective.load_state_dict(prefixed(tensors, "objective"))
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(state.pop("scheduler"))
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], device)
        best_state = prefixed(tensors, "best") or None
        log(f"resumed from {checkpoint} at epoch {state['epoch'] + 1}, step {state['step_in_epoch']}")

    def write_checkpoint() -> None:
        if checkpoint is None or rank != 0:
            return
        modules = {"objective": objective} | ({"best": best_state} if best_state is not None else {})
        save_checkpoint(checkpoint_dir, modules, optimizer, state | {"scheduler": scheduler.state_dict()})

    started = time.perf_counter() - state["seconds"]
    objective.train()
    with StopRequests() as stop:
        while state["epoch"] < settings.epochs:
            epoch = state["epoch"] + 1
            source_plan = epoch_plan(n_source, batch, steps_per_epoch, seed, epoch, 0)
            target_plan = epoch_plan(n_target, batch, steps_per_epoch, seed, epoch, 1)
            while state["step_in_epoch"] < steps_per_epoch:
                if stop.received is not None:
                    state["seconds"] = time.perf_counter() - started
                    write_checkpoint()
                    raise Interrupted(stop.received)
                k = state["step_in_epoch"]
                rows = source_plan[k][rank::world]
                target_rows = target_plan[k][rank::world]
                step = (epoch - 1) * steps_per_epoch + k
                with batch_shard(rank, world):
                    loss = trainer(
                        to_tensors(source_inputs, rows.numpy(), device),
                        labels_tensor[rows.to(device)],
                        to_tensors(target, target_rows.numpy(), device),
                        step / total_steps,
                    )
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"training diverged: the loss became {loss.item()} at epoch {epoch}, step {k + 1} "
                        f"(lr {settings.lr}); lower --lr, or check the inputs for extreme values"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                state["losses"].append(loss.item())
                state["step_in_epoch"] += 1
                if on_step is not None:
                    on_step(step + 1, total_steps)
            scores = selection_scores(
                model, source_val, target, predict, val_weights, with_entropy=settings.selection == "entropy"
            )
            record = {"epoch": epoch, "train_loss": float(np.mean(state["losses"])), **scores}
            if target_test is not None and (target_test[1] >= 0).any():
                record["target_accuracy"] = accuracy(predict(model, target_test[0])[0], target_test[1])
            state["history"].append(record)
            score = scores[settings.selection]
            improved = score > state["best_score"] + 1e-9
            state["stale"] = 0 if improved else state["stale"] + 1
            state["best_score"] = max(score, state["best_score"])
            # The latest epoch within the tolerance of the best so far is the latest within the tolerance
            # of the final best: epochs after the final best see that best already.
            tolerance = selection_tolerance(settings.selection, state["best_score"], n_validation)
            if score >= state["best_score"] - tolerance - 1e-9:
                state["best_epoch"] = epoch
                best_state = copy.deepcopy(model.state_dict())
            log(
                f"epoch {epoch:3d}  loss {record['train_loss']:.4f}"
                + f"  source-val acc {scores['source_val_accuracy']:.4f}"
                + (f"  target acc {record['target_accuracy']:.4f}" if "target_accuracy" in record else "")
                + ("  *" if improved else "")
            )
            state.update(epoch=epoch, step_in_epoch=0, losses=[], seconds=time.perf_counter() - started)
            if early_stopping and state["stale"] >= settings.patience:
                break
            write_checkpoint()
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        state["best_epoch"], len(state["history"]), state["history"], time.perf_counter() - started
    )
