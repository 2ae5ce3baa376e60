"""A run whose training loss explodes stops at that epoch, keeping the epoch its criterion chose."""

import math

import torch

from crossfuse.evaluation.warnings import loss_warnings
from crossfuse.train.divergence import DIVERGENCE_FACTOR, divergence_ratio
from crossfuse.train.lifecycle import start_method
from crossfuse.train.loop import Trainer, TrainSettings
from crossfuse.transfer.dann import DANN
from tests.distributed_steps import toy_data, toy_model


def test_divergence_is_the_last_loss_over_the_first_beyond_the_factor():
    assert divergence_ratio([2.0, 2.0 * DIVERGENCE_FACTOR]) is None  # at the factor: not beyond it
    assert divergence_ratio([2.0, 1e3]) == 500.0
    assert divergence_ratio([2.0, 1e3, 3.0]) is None  # the last epoch is what counts
    assert divergence_ratio([5.0]) is None
    assert divergence_ratio([0.0, 1e6]) is None and divergence_ratio([-1.0, 1e6]) is None


class ExplodingDANN(DANN):
    """DANN plus a constant that grows as ``exp(30 p)`` over the schedule: epoch 3 of 6 averages several
    hundred times epoch 1's loss, with gradients that stay DANN's."""

    def alignment_loss(self, outputs, progress):
        return super().alignment_loss(outputs, progress) + 1e-3 * math.exp(30 * progress)


def test_a_run_whose_loss_explodes_stops_there_and_says_so():
    source, labels, target = toy_data()
    model, _, _ = toy_model("late", "dann", {}, source, labels, target)
    method = ExplodingDANN()
    start_method(method, model, source, target, seed=0, source_labels=labels)
    lines = []
    settings = TrainSettings(epochs=6, batch_size=16, min_steps_per_epoch=10, early_stopping=False)
    trainer = Trainer(
        model, method, (source, labels), (source, labels), target, (target, labels), settings, seed=0,
        log=lines.append,
    )  # fmt: skip
    result = trainer.fit()
    losses = [r["train_loss"] for r in result.history]
    assert result.epochs_run == 3 and losses[2] > DIVERGENCE_FACTOR * losses[0] > losses[1]
    assert result.best_epoch <= 3
    assert any(line.startswith("epoch 3: the training loss exploded") for line in lines)
    assert torch.equal(
        next(iter(model.state_dict().values())), next(iter(trainer.best_weights.values()))
    )  # the kept epoch's weights are the model's
    (flag,) = loss_warnings(result.history)
    assert "exploded" in flag and "training stopped at epoch 3" in flag


def test_a_run_that_trains_normally_runs_every_epoch():
    source, labels, target = toy_data()
    model, method, _ = toy_model("late", "dann", {}, source, labels, target)
    settings = TrainSettings(epochs=3, batch_size=16, min_steps_per_epoch=4, early_stopping=False)
    result = Trainer(
        model, method, (source, labels), (source, labels), target, (target, labels), settings, seed=0,
        log=lambda _: None,
    ).fit()  # fmt: skip
    assert result.epochs_run == 3


class RestartingDANN(DANN):
    optimizer_restart = 0.5


def test_the_optimiser_restarts_once_at_the_share_of_the_schedule_the_method_names(monkeypatch):
    from crossfuse.train.optimizer import AdamW

    source, labels, target = toy_data()
    model, _, _ = toy_model("late", "dann", {}, source, labels, target)
    method = RestartingDANN()
    start_method(method, model, source, target, seed=0, source_labels=labels)
    settings = TrainSettings(epochs=3, batch_size=16, min_steps_per_epoch=5, early_stopping=False)
    trainer = Trainer(
        model, method, (source, labels), (source, labels), target, (target, labels), settings, seed=0,
        log=lambda _: None,
    )  # fmt: skip
    restarted_after = []
    restart = AdamW.restart
    monkeypatch.setattr(
        AdamW, "restart", lambda self: restarted_after.append(self.common_step) or restart(self)
    )
    trainer.fit()
    total = trainer.total_steps
    first = math.ceil(total / 2)  # the first step k (from 0) with k / total >= 0.5
    assert restarted_after == [first]
    assert trainer.optimizer.common_step == total - first
