"""The two-stream training loop: labelled source batches, unlabelled target batches, label-free selection."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from crossfuse.errors import ConfigError, CrossfuseError
from crossfuse.model import MultimodalModel
from crossfuse.parallel import batch_shard
from crossfuse.registry import SELECTION_CRITERIA
from crossfuse.selection.base import Evidence, SelectionCriterion
from crossfuse.train.checkpoint import CHECKPOINT, load_checkpoint, prefixed, save_checkpoint
from crossfuse.train.divergence import divergence_ratio
from crossfuse.train.optimizer import AdamW, CosineDecay
from crossfuse.train.state import TrainState
from crossfuse.train.stopping import Interrupted, StopRequests
from crossfuse.transfer.base import TransferMethod

Arrays = Mapping[str, np.ndarray]


@dataclass
class TrainSettings:
    """Optimisation settings; the defaults are meant to work unchanged on small and medium data sets.

    ``epochs`` is a ceiling for source-only training, which stops when the selection score has not improved
    for ``patience`` epochs. Methods that use the target stream follow a schedule over the whole run (the DANN
    warm-up, the learning-rate decay), so by default (``early_stopping=None``) they run every epoch. Either
    way the latest epoch whose score is within the criterion's tolerance of the best is kept (one standard
    error for source-validation accuracy in a run with a target domain, exact ties otherwise): a saturated
    source-validation accuracy then picks the most trained (most adapted) model. ``batch_size`` is capped at a
    quarter of the source training set and an epoch has at least ``min_steps_per_epoch`` steps, so small data
    sets still get enough updates. ``weight_averaging='ema'`` keeps an exponential moving average of the
    weights (``a <- ema_decay a + (1 - ema_decay) w`` after every step); each epoch is then scored, selected
    and kept on the averaged weights (Polyak averaging; SWAD, Cha et al., NeurIPS 2021, shows the family's
    value under shift). ``weight_averaging='swa'`` keeps instead the uniform average of the weights after
    every step from :data:`SWA_START` of the schedule on, ``a_n = a_{n-1} + (w - a_{n-1}) / n`` (stochastic
    weight averaging, Izmailov et al., UAI 2018, taken densely over steps as SWAD does). A run that averages
    weights, like one that adapts, follows its whole schedule by default.
    """

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8
    selection: str = "source-val"
    min_steps_per_epoch: int = 50
    early_stopping: bool | None = None
    weight_averaging: str = "none"
    ema_decay: float = 0.99


WEIGHT_AVERAGING = ("none", "ema", "swa")
#: Share of the schedule after which stochastic weight averaging starts.
SWA_START = 0.25


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    #: The kept epoch's outputs on the source-validation rows (what its source-validation score read).
    val_outputs: np.ndarray | None = None


def to_tensors(
    inputs: Arrays, rows: np.ndarray | None = None, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """The chosen rows of each modality as tensors on ``device``."""
    return {
        m: torch.from_numpy(np.ascontiguousarray(x if rows is None else x[rows])).to(device)
        for m, x in inputs.items()
    }


def same_rows(a: Arrays, b: Arrays) -> bool:
    """Whether two sets of modality arrays hold the same rows, in the same order."""
    return a.keys() == b.keys() and all(
        a[m].shape == b[m].shape and np.array_equal(a[m], b[m], equal_nan=a[m].dtype.kind == "f") for m in a
    )


def device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def predict(
    model: MultimodalModel, inputs: Arrays | Mapping[str, torch.Tensor], batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (class probabilities ``(N, C)``, or values ``(N, 1)`` for regression) and fused
    features ``(N, d)``, in evaluation mode. ``inputs`` may be arrays (each batch is copied to the model's
    device) or tensors already there (each batch is a slice)."""
    n = len(next(iter(inputs.values())))
    if n == 0:
        return np.zeros((0, model.n_outputs), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
    was_training = model.training
    model.eval()
    device = device_of(model)
    probabilities, features = [], []
    tensors = all(isinstance(x, torch.Tensor) for x in inputs.values())
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        batch = (
            {m: x[start:stop].to(device) for m, x in inputs.items()}
            if tensors
            else to_tensors(inputs, np.arange(start, stop), device)
        )
        fused = model.fuse(model.encode(batch))
        probabilities.append(model.objective.predictions(model.head(fused)).cpu().numpy())
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


def mean_absolute_error(predicted: np.ndarray, targets: np.ndarray) -> float | None:
    """Mean absolute error of regression predictions ``(N, k)`` over the rows with a target (not NaN);
    with several targets (``targets`` of shape ``(N, k)``), its mean over them."""
    if targets.ndim == 2:
        known = ~np.isnan(targets).any(1)
        return float(np.abs(predicted[known] - targets[known]).mean()) if known.any() else None
    known = ~np.isnan(targets)
    if not known.any():
        return None
    return float(np.abs(predicted[known, 0] - targets[known]).mean())


def has_labels(labels: np.ndarray) -> bool:
    """Whether any row has a label (class index ``>= 0``, or a target that is not NaN)."""
    if labels.dtype.kind == "f":
        return bool((~np.isnan(labels)).any())
    return bool((labels >= 0).any())


class TrainingDiverged(CrossfuseError):
    """The training loss became NaN or infinite; the run stops instead of reporting a broken model."""


class TrainingObjective(nn.Module):
    """Model and transfer method as one module whose forward is the training loss, so that
    DistributedDataParallel sees every parameter that a step uses."""

    def __init__(self, model: MultimodalModel, method: TransferMethod) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, source, labels, target, progress: float) -> torch.Tensor:
        self.method.loss_parts = {}
        method_loss = self.method.training_loss(self.model, source, labels, target, progress)
        penalty = self.model.penalty()
        loss = method_loss + penalty
        # a method that does not name its terms (a user's own, say) is one term
        parts = dict(self.method.loss_parts) or {"method": method_loss.detach()}
        if self.model.fusion_has_penalty:
            parts["fusion_penalty"] = penalty.detach()
        if self.model.modality_dropout > 0:
            single = single_modality_loss(self.model, source, labels)
            parts["single_modality"] = single.detach()
            loss = loss + single
        # the terms of this loss by name, when it has more than one: the trainer records them
        self.loss_parts = parts if len(parts) > 1 else {}
        return loss


def single_modality_loss(model: MultimodalModel, source, labels: torch.Tensor) -> torch.Tensor:
    """``mean_m l(head(fuse({m: f_m, others: placeholders})), y)`` on the source batch: with modality
    dropout on, every step also trains each modality's path alone, so that the model without the other
    modalities is as good as one trained on that modality alone. Random dropping reaches a single
    modality only in some samples (a share ``P (1 - P) + P^2 / 2`` of them with two modalities)."""
    features = model.encode(source)
    losses = []
    for name in features:
        alone = {m: f if m == name else model.placeholders[m].expand_as(f) for m, f in features.items()}
        losses.append(model.objective.loss(model.head(model.fuse(alone)), labels))
    return torch.stack(losses).mean()


def epoch_plan(n: int, batch: int, steps: int, seed: int, epoch: int, stream: int) -> torch.Tensor:
    """Row indices ``(steps, batch)`` of one epoch: consecutive permutations from a generator seeded by
    (seed, epoch, stream), so any epoch can be replayed exactly on resume."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 2 + stream)
    needed = steps * batch
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(math.ceil(needed / n))])
    return order[:needed].view(steps, batch)


class Trainer:
    """Two-stream training of a model with a transfer method, in testable parts.

    :meth:`step` takes one labelled source batch and one unlabelled target batch; :meth:`end_epoch`
    scores the epoch with the selection criterion, records it and says whether to stop; :meth:`fit`
    runs the schedule, checkpoints and resumes. See :func:`train` for the protocol.
    """

    def __init__(
        self,
        model: MultimodalModel,
        method: TransferMethod,
        source: tuple[Arrays, np.ndarray],
        source_val: tuple[Arrays, np.ndarray],
        target: Arrays,
        target_test: tuple[Arrays, np.ndarray] | None,
        settings: TrainSettings,
        seed: int,
        log: Callable[[str], None] = print,
        criterion: SelectionCriterion | None = None,
        checkpoint_dir: Path | None = None,
        on_step: Callable[[int, int], None] | None = None,
        record_criteria: Mapping[str, SelectionCriterion] | None = None,
        source_domains: np.ndarray | None = None,
    ) -> None:
        self.model, self.method, self.settings, self.seed = model, method, settings, seed
        self.source_domains = None if source_domains is None else torch.from_numpy(source_domains)
        self.record_criteria = dict(record_criteria or {})
        self.source, self.source_val, self.target, self.target_test = source, source_val, target, target_test
        # Transductive adaptation scores the rows it adapts to: predict them once an epoch, not twice.
        self.target_is_test = target_test is not None and same_rows(target, target_test[0])
        self.epoch_target_outputs: np.ndarray | None = None
        self.log, self.on_step = log, on_step
        self.regression = model.objective.kind == "regression"
        if criterion is None:
            criterion = SELECTION_CRITERIA.get_or_refuse(settings.selection, "selection")()
            criterion.objective = model.objective.kind
            criterion.fit(source[0], target, source_val[0], seed)
        self.criterion = criterion
        distributed = dist.is_available() and dist.is_initialized()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        torch.manual_seed(seed)
        # Modality dropout trains the single-modality paths more slowly than the full one, which saturates
        # the source validation early: such a run, like an adaptation, follows its whole schedule.
        self.early_stopping = (
            settings.early_stopping
            if settings.early_stopping is not None
            else (method.stops_early if method.stops_early is not None else not method.uses_target)
            and model.modality_dropout == 0
            and settings.weight_averaging == "none"
        )
        n_source = len(source[1])
        self.n_target = len(next(iter(target.values())))
        batch = max(2 * self.world, min(settings.batch_size, n_source // 4 or 2))
        self.batch = batch - batch % self.world
        self.steps_per_epoch = max(math.ceil(n_source / self.batch), settings.min_steps_per_epoch)
        self.total_steps = self.steps_per_epoch * settings.epochs
        self.device = device_of(model)
        if self.source_domains is not None:
            self.source_domains = self.source_domains.to(self.device)
        self.labels = torch.from_numpy(source[1]).to(self.device)
        # The training rows stay tensors on the training device for the whole run (on a CPU they share the
        # arrays' memory): a step indexes them, with no numpy round trip.
        self.source_rows = to_tensors(source[0], device=self.device)
        self.target_rows = to_tensors(target, device=self.device)
        self.no_target_rows = {m: x[:0] for m, x in self.target_rows.items()}
        # the rows scored every epoch live there too: an epoch's evaluation copies nothing to the device
        self.val_rows = to_tensors(source_val[0], device=self.device)
        self.test_rows = (
            self.target_rows
            if self.target_is_test or target_test is None
            else to_tensors(target_test[0], device=self.device)
        )
        self.objective = TrainingObjective(model, method)
        self.forward = (
            DistributedDataParallel(
                self.objective, device_ids=[self.device] if self.device.type == "cuda" else None
            )
            if distributed
            else self.objective
        )
        self.optimizer = AdamW(
            self.objective.parameters(),
            lr=settings.lr,
            weight_decay=settings.weight_decay,
            # one update for all parameters (their views of one buffer); DDP keeps its own buckets
            flat=not distributed,
        )
        self.scheduler = CosineDecay(self.optimizer, total_steps=self.total_steps, eta_min=settings.lr / 20)
        self.state = TrainState()
        self.best_weights: dict[str, torch.Tensor] | None = None
        if settings.weight_averaging not in WEIGHT_AVERAGING:
            raise ConfigError(
                f"weight_averaging {settings.weight_averaging!r}: choose {', '.join(WEIGHT_AVERAGING)}"
            )
        if self.n_target == 0 and method.uses_target:
            raise ConfigError(f"{type(method).__name__} trains on target rows, and there are none")
        self.average: dict[str, torch.Tensor] | None = None
        if settings.weight_averaging != "none":
            self.average = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.checkpoint = checkpoint_dir / CHECKPOINT if checkpoint_dir is not None else None

    def resume(self) -> None:
        """Continue from the checkpoint, when there is one."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return
        tensors, record, optimizer_state = load_checkpoint(self.checkpoint)
        self.objective.load_state_dict(prefixed(tensors, "objective"))
        self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(record.pop("scheduler"))
        self.state = TrainState.from_record(record)
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.best_weights = prefixed(tensors, "best") or None
        if self.average is not None:
            self.average = prefixed(tensors, "average")
        self.log(
            f"resumed from {self.checkpoint} at epoch {self.state.epoch + 1}, step {self.state.step_in_epoch}"
        )

    def write_checkpoint(self) -> None:
        if self.checkpoint is None or self.rank != 0:
            return
        modules = {"objective": self.objective}
        if self.best_weights is not None:
            modules["best"] = self.best_weights
        if self.average is not None:
            modules["average"] = self.average
        record = self.state.to_record() | {"scheduler": self.scheduler.state_dict()}
        save_checkpoint(self.checkpoint.parent, modules, self.optimizer, record)

    def restarts_optimizer_at(self, step: int) -> bool:
        """Whether ``step`` (from 0) is the first whose share of the schedule reaches the method's
        :attr:`~crossfuse.transfer.base.TransferMethod.optimizer_restart` (told from the step alone, so
        that a resumed run restarts at the same step and only once)."""
        share = self.method.optimizer_restart
        return share is not None and step / self.total_steps >= share > (step - 1) / self.total_steps

    def step(self, source_rows: torch.Tensor, target_rows: torch.Tensor, progress: float) -> float:
        """One optimisation step on the given global rows (this process takes its share); the loss."""
        # a no-op for the epoch plans, which are on the device already
        rows = source_rows[self.rank :: self.world].to(self.device)
        target_rows = target_rows[self.rank :: self.world].to(self.device)
        self.method.batch_source_rows = rows
        # index_select copies whole rows (a quarter of the time of indexing by ``x[rows]`` on a CPU, which
        # walks every element); the same values
        if self.source_domains is not None:
            self.method.batch_source_domains = self.source_domains.index_select(0, rows)
        with batch_shard(self.rank, self.world):
            loss = self.forward(
                {m: x.index_select(0, rows) for m, x in self.source_rows.items()},
                self.labels.index_select(0, rows),
                # a method that trains on the source alone gets no target rows: nothing to gather
                {m: x.index_select(0, target_rows) for m, x in self.target_rows.items()}
                if self.method.uses_target
                else self.no_target_rows,
                progress,
            )
        # one read of the loss (and its terms) a step, before the backward pass: on a GPU every read waits
        # for the device
        parts = self.objective.loss_parts
        if parts:
            values = torch.stack([loss.detach(), *parts.values()]).tolist()
            value = values[0]
            for name, part in zip(parts, values[1:], strict=True):
                self.state.loss_parts.setdefault(name, []).append(part)
        else:
            value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"training diverged: the loss became {value} at epoch {self.state.epoch + 1}, step "
                f"{self.state.step_in_epoch + 1} (lr {self.settings.lr}); lower --lr, or check the inputs "
                "for extreme values"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.average is not None:
            self.update_average()
        return value

    @torch.no_grad()
    def update_average(self) -> None:
        """The averaged weights after a step (buffers are copied): the exponential moving average
        ``a <- d a + (1 - d) w``, or SWA's running mean ``a <- a + (w - a) / n`` over the steps since
        :data:`SWA_START` of the schedule (before it, ``a = w``)."""
        if self.settings.weight_averaging == "swa":
            done = self.state.epoch * self.steps_per_epoch + self.state.step_in_epoch + 1
            if done <= SWA_START * self.total_steps:
                self.state.averaged, decay = 0, 0.0
            else:
                self.state.averaged += 1
                decay = 1 - 1 / self.state.averaged
        else:
            decay = self.settings.ema_decay
        for key, value in self.model.state_dict().items():
            if value.is_floating_point() and key in self.average:
                self.average[key].mul_(decay).add_(value, alpha=1 - decay)
            else:
                self.average[key] = value.detach().clone()

    def target_outputs(self) -> np.ndarray:
        """This epoch's predictions on the unlabelled target rows (computed once an epoch)."""
        if self.epoch_target_outputs is None:
            self.epoch_target_outputs = predict(self.model, self.target_rows)[0]
        return self.epoch_target_outputs

    def evidence(self) -> Evidence:
        """What the criterion scores this epoch's model on (never a target label)."""
        val_probabilities, _ = predict(self.model, self.val_rows)
        target_probabilities = self.target_outputs() if self.criterion.needs_target else None
        return Evidence(
            val_probabilities,
            self.source_val[1],
            target_probabilities,
            self.criterion.validation_weights(),
            self.model.objective.kind,
        )

    def end_epoch(self, epoch: int) -> bool:
        """Score and record ``epoch`` (its averaged weights, with weight averaging); keep those weights if
        it is the one to keep; whether to stop."""
        if self.average is None:
            return self.score_epoch(epoch)
        trained = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(self.average)
        try:
            return self.score_epoch(epoch)
        finally:
            self.model.load_state_dict(trained)

    def recorded_scores(self, evidence: Evidence) -> dict[str, float]:
        """The score every recorded criterion gives this epoch (so a benchmark can tell, afterwards, which
        epoch each would have chosen); none of them steers the training."""
        if not self.record_criteria:
            return {}
        target = None
        if any(c.needs_target for c in self.record_criteria.values()):
            target = self.target_outputs()
        return {
            name: float(
                criterion.score(
                    replace(evidence, target_probabilities=target, val_weights=criterion.validation_weights())
                )
            )
            for name, criterion in self.record_criteria.items()
        }

    def score_epoch(self, epoch: int) -> bool:
        self.epoch_target_outputs = None
        evidence = self.evidence()
        score = self.criterion.score(evidence)
        recorded = self.recorded_scores(evidence)
        metric, measure = ("mae", mean_absolute_error) if self.regression else ("accuracy", accuracy)
        short = "mae" if self.regression else "acc"
        record = {"epoch": epoch, "train_loss": float(np.mean(self.state.losses))}
        if self.state.loss_parts:
            record["train_loss_parts"] = {k: float(np.mean(v)) for k, v in self.state.loss_parts.items()}
        record[f"source_val_{metric}"] = measure(evidence.val_probabilities, evidence.val_labels)
        record[self.settings.selection] = score
        if recorded:
            record["criteria"] = recorded
        if self.target_test is not None and has_labels(self.target_test[1]):
            target_outputs = (
                self.target_outputs() if self.target_is_test else predict(self.model, self.test_rows)[0]
            )
            record[f"target_{metric}"] = measure(target_outputs, self.target_test[1])
        self.state.history.append(record)
        n_validation = len(self.source_val[1])
        improved, kept = self.state.best.update(
            epoch, score, lambda best: self.criterion.tolerance(best, n_validation)
        )
        if kept:
            self.best_weights = copy.deepcopy(self.model.state_dict())
        self.log(
            f"epoch {epoch:3d}  loss {record['train_loss']:.4f}"
            + f"  source-val {short} {record[f'source_val_{metric}']:.4f}"
            + (f"  target {short} {record[f'target_{metric}']:.4f}" if f"target_{metric}" in record else "")
            + ("  *" if improved else "")
        )
        ratio = divergence_ratio([r["train_loss"] for r in self.state.history])
        if ratio is not None:
            self.log(
                f"epoch {epoch}: the training loss exploded ({record['train_loss']:.3g}, {ratio:.0f} times "
                f"epoch 1's); training stops here, keeping epoch {self.state.best.best_epoch}"
            )
            return True
        return self.early_stopping and self.state.best.stale >= self.settings.patience

    def fit(self) -> TrainResult:
        """Run (or resume) the schedule; leave the kept epoch's weights in the model."""
        self.resume()
        state = self.state
        started = time.perf_counter() - state.seconds
        self.objective.train()
        try:
            self.run_schedule(started)
        finally:
            # the weights get their own memory back even when training stops with an exception
            self.optimizer.release()
        self.model.load_state_dict(self.best_weights)
        self.model.eval()
        seconds = time.perf_counter() - started
        kept_val = predict(self.model, self.val_rows)[0]
        return TrainResult(state.best.best_epoch, len(state.history), state.history, seconds, kept_val)

    def run_schedule(self, started: float) -> None:
        """The epochs left of the schedule, each ended by :meth:`end_epoch` and a checkpoint."""
        state = self.state
        with StopRequests() as stop:
            while state.epoch < self.settings.epochs:
                epoch = state.epoch + 1
                # the plans go to the device once an epoch: a copy a step would wait for the device each time
                source_plan = epoch_plan(
                    len(self.source[1]), self.batch, self.steps_per_epoch, self.seed, epoch, 0
                ).to(self.device)
                target_plan = (
                    epoch_plan(self.n_target, self.batch, self.steps_per_epoch, self.seed, epoch, 1)
                    if self.n_target
                    else torch.zeros((self.steps_per_epoch, 0), dtype=torch.long)
                ).to(self.device)
                while state.step_in_epoch < self.steps_per_epoch:
                    if stop.received is not None:
                        state.seconds = time.perf_counter() - started
                        self.write_checkpoint()
                        raise Interrupted(stop.received)
                    k = state.step_in_epoch
                    step = (epoch - 1) * self.steps_per_epoch + k
                    if self.restarts_optimizer_at(step):
                        self.optimizer.restart()
                    state.losses.append(self.step(source_plan[k], target_plan[k], step / self.total_steps))
                    state.step_in_epoch += 1
                    if self.on_step is not None:
                        self.on_step(step + 1, self.total_steps)
                stop_now = self.end_epoch(epoch)
                state.epoch, state.step_in_epoch, state.losses, state.loss_parts = epoch, 0, [], {}
                state.seconds = time.perf_counter() - started
                if stop_now:
                    break
                self.write_checkpoint()


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
    criterion: SelectionCriterion | None = None,
    checkpoint_dir: Path | None = None,
    on_step: Callable[[int, int], None] | None = None,
    record_criteria: Mapping[str, SelectionCriterion] | None = None,
    source_domains: np.ndarray | None = None,
) -> TrainResult:
    """Train ``model`` with ``method``; leave in it the weights of the epoch that ``settings.selection``
    keeps.

    ``target_test`` labels are used only to record the oracle accuracy of every epoch in the history;
    they never influence training or the choice of epoch. ``criterion`` is the selection criterion,
    already fitted; by default the one named by ``settings.selection``, fitted here on the training rows.
    ``record_criteria`` (fitted) are scored every epoch and recorded in the history, without steering.
    ``source_domains`` gives each source row's domain index, which the method sees batch by batch
    (``method.batch_source_domains``). ``target`` may have no rows for a method that does not use it.

    With ``checkpoint_dir``, a checkpoint is written there after every epoch and when SIGTERM or SIGINT
    arrives (then :class:`Interrupted` is raised); a checkpoint found there is resumed, and the result is
    the same as an uninterrupted run. Under ``torch.distributed`` each of the N processes takes every
    N-th row of the same global batch and DistributedDataParallel averages the gradients; random draws and
    batch statistics are made global (:mod:`crossfuse.parallel`), so N processes train the model one
    process would, up to floating-point order. Only rank 0 writes. ``on_step(done, total)`` follows progress
    (a progress bar), ``total`` being the most steps the run can take. A run whose training loss explodes
    stops at that epoch (:mod:`crossfuse.train.divergence`).
    """
    trainer = Trainer(
        model, method, source, source_val, target, target_test, settings, seed, log, criterion,
        checkpoint_dir, on_step, record_criteria, source_domains,
    )  # fmt: skip
    return trainer.fit()
