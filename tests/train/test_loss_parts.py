"""The history names the terms of a loss of several: their epoch means add up to the epoch's loss."""

import math

import pytest

from crossfuse.train.loop import Trainer, TrainSettings
from crossfuse.train.state import TrainState
from tests.distributed_steps import toy_data, toy_model


def two_epochs(fusion: str, transfer: str) -> list[dict]:
    source, labels, target = toy_data()
    model, method, domains = toy_model(fusion, transfer, {}, source, labels, target)
    settings = TrainSettings(epochs=2, batch_size=16, min_steps_per_epoch=4, early_stopping=False)
    trainer = Trainer(
        model, method, (source, labels), (source, labels), target, (target, labels), settings, seed=0,
        log=lambda _: None, source_domains=domains,
    )  # fmt: skip
    return trainer.fit().history


@pytest.mark.parametrize(
    ("fusion", "transfer", "names"),
    [
        ("late", "dann", {"source", "alignment"}),
        ("late", "mixup", {"source", "mixup"}),
        ("late", "vada", {"source", "alignment", "target_entropy", "smoothness"}),
        ("nuclear", "source-only", {"source", "fusion_penalty"}),
    ],
)
def test_the_terms_of_each_epoch_add_up_to_its_loss(fusion, transfer, names):
    for record in two_epochs(fusion, transfer):
        parts = record["train_loss_parts"]
        assert set(parts) == names
        assert math.isclose(sum(parts.values()), record["train_loss"], rel_tol=1e-5)


def test_dann_records_its_domain_loss_near_log_2_once_the_domains_are_confused():
    """The alignment term of DANN is its domain classifier's cross-entropy (times weight 1): log 2 when
    the classifier cannot tell the domains apart, which the toy's shifted target reaches quickly."""
    history = two_epochs("late", "dann")
    assert all(0.3 < record["train_loss_parts"]["alignment"] < 0.8 for record in history)
    assert all(record["train_loss_parts"]["source"] < record["train_loss"] for record in history)


def test_a_loss_of_one_term_records_no_parts():
    assert all("train_loss_parts" not in record for record in two_epochs("late", "source-only"))


def test_the_terms_of_an_unfinished_epoch_survive_a_checkpoint():
    state = TrainState(epoch=1, step_in_epoch=2, losses=[1.0, 2.0], loss_parts={"source": [0.5, 1.5]})
    assert TrainState.from_record(state.to_record()).loss_parts == {"source": [0.5, 1.5]}
    # a checkpoint written before the history named the terms still loads
    older = {k: v for k, v in state.to_record().items() if k != "loss_parts"}
    assert TrainState.from_record(older).loss_parts == {}
