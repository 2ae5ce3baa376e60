"""IWDAN: the class-share ratios (BBSE with constraints), the weighted losses and the running estimate."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crossfuse.errors import ConfigError
from crossfuse.evaluation.warnings import collapse_limit
from crossfuse.model import build_model
from crossfuse.train.lifecycle import start_method
from crossfuse.transfer.gradient_reversal import dann_lambda
from crossfuse.transfer.iwdan import ImportanceWeightedDANN, capped_ratios, class_ratios


def test_class_ratios_recover_the_shift_through_a_confusing_classifier():
    """``C = M diag(p)`` for a classifier whose column ``j`` is ``P(prediction | y = j)``; its target
    predictions are ``mu = M q``, so the ratios are ``q / p``, exactly, with a perfect and with an
    imperfect classifier."""
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.3, 0.6])
    perfect = np.diag(p)
    assert np.allclose(class_ratios(perfect, q), q / p, atol=1e-9)
    confusing = np.array([[0.8, 0.1, 0.2], [0.15, 0.7, 0.1], [0.05, 0.2, 0.7]])  # columns sum to 1
    ratios = class_ratios(confusing @ np.diag(p), confusing @ q)
    assert np.allclose(ratios, q / p, atol=1e-6)
    assert ratios @ p == pytest.approx(1.0, abs=1e-12)  # the target's shares p * w sum to one


def test_class_ratios_stay_non_negative_and_sum_to_one_when_no_shift_fits():
    """Target predictions no shift of the classes explains (more of class 0 than any ``q`` gives):
    the constrained least squares, computed here by a brute-force search over the simplex."""
    p = np.array([0.5, 0.5])
    confusion = np.array([[0.4, 0.3], [0.1, 0.2]])
    mu = np.array([0.95, 0.05])
    ratios = class_ratios(confusion, mu)
    assert (ratios >= 0).all() and ratios @ p == pytest.approx(1.0, abs=1e-12)
    grid = [np.array([a, 1 - a]) / p for a in np.linspace(0, 1, 100001)]
    best = min(grid, key=lambda w: np.sum((confusion @ w - mu) ** 2))
    assert np.allclose(ratios, best, atol=1e-4)
    assert np.allclose(class_ratios(np.diag([0.6, 0.0, 0.4]), [0.6, 0.0, 0.4]), [1.0, 1.0, 1.0])


def test_no_estimated_share_passes_the_collapse_limit_and_the_excess_goes_to_the_others_by_their_shares():
    """Ten balanced source classes: the collapse flag's limit is 35%. An estimate of 45 / 20 / 20 / 15 /
    0 ... gives its 10 points over the limit to the other three in proportion (4:4:3); one of 80 / 15 / 5
    needs two rounds (the second class passes the limit after the first); one under the limit is left as
    it is."""
    p = np.full(10, 0.1)
    assert collapse_limit(0.1) == pytest.approx(0.35)
    shares = np.r_[0.45, 0.2, 0.2, 0.15, np.zeros(6)]
    capped = capped_ratios(shares / p, p) * p
    excess = 0.10 / 0.55
    assert np.allclose(
        capped, np.r_[0.35, 0.2 * (1 + excess), 0.2 * (1 + excess), 0.15 * (1 + excess), np.zeros(6)]
    )
    assert capped.sum() == pytest.approx(1.0)
    capped = capped_ratios(np.r_[0.8, 0.15, 0.05, np.zeros(7)] / p, p) * p
    assert np.allclose(capped, np.r_[0.35, 0.35, 0.30, np.zeros(7)])
    capped = capped_ratios(np.r_[1.0, np.zeros(9)] / p, p) * p
    assert np.allclose(capped, np.r_[0.35, np.full(9, 0.65 / 9)])
    below = np.r_[0.3, 0.3, 0.2, 0.2, np.zeros(6)]
    assert np.array_equal(capped_ratios(below / p, p), below / p)
    # a source 74% one class (the wine data): the limit is 90%, so a 63% target share is untouched
    wine = np.array([0.023, 0.736, 0.241])
    assert collapse_limit(0.736) == pytest.approx(0.9)
    target = np.array([0.626, 0.077, 0.297])
    assert np.allclose(capped_ratios(target / wine, wine) * wine, target)


def small(update_every=10, momentum=0.5):
    torch.manual_seed(0)
    model = build_model({"x": (4,)}, 3, fusion="late", hidden_dim=8)
    method = ImportanceWeightedDANN(update_every=update_every, momentum=momentum)
    x = {"x": np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)}
    start_method(method, model, x, x, seed=0, source_labels=np.arange(12) % 3)
    return model.eval(), method


def test_the_training_loss_weights_each_source_row_by_its_class_by_hand():
    model, method = small()
    method.class_weights.copy_(torch.tensor([2.0, 0.5, 0.5]))
    rng = np.random.default_rng(1)
    source = {"x": torch.from_numpy(rng.normal(size=(6, 4)).astype(np.float32))}
    target = {"x": torch.from_numpy(rng.normal(size=(6, 4)).astype(np.float32) + 1)}
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = method.training_loss(model, source, labels, target, 0.4)
    w = torch.tensor([2.0, 0.5, 0.5, 2.0, 0.5, 0.5])
    source_logits = model(source)
    classification = (w * F.cross_entropy(source_logits, labels, reduction="none")).sum() / w.sum()
    features_s, features_t = model.encode(source), model.encode(target)
    spaces = {m: (features_s[m], features_t[m]) for m in features_s}
    spaces["fused"] = (model.fuse(features_s), model.fuse(features_t))
    domain = []
    for space, (s, t) in spaces.items():
        zs, zt = method.classifiers[space](s), method.classifiers[space](t)
        domain.append(
            0.5 * (w * -torch.log(1 - torch.sigmoid(zs))).mean() + 0.5 * -torch.log(torch.sigmoid(zt)).mean()
        )
    expected = classification + torch.stack(domain).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert method.last_lambda == pytest.approx(dann_lambda(0.4))


def test_every_update_every_steps_the_weights_move_halfway_to_the_estimate_of_those_steps():
    model, method = small(update_every=2, momentum=0.5)
    rng = np.random.default_rng(2)
    batches = [
        (torch.from_numpy(rng.normal(size=(6, 4)).astype(np.float32)), torch.tensor([0, 0, 0, 0, 1, 2]),
         torch.from_numpy(rng.normal(size=(6, 4)).astype(np.float32)))
        for _ in range(2)
    ]  # fmt: skip
    confusion, target_mean = np.zeros((3, 3)), np.zeros(3)
    for x_s, y, x_t in batches:
        with torch.no_grad():
            p_s = torch.softmax(model({"x": x_s}), -1).double().numpy()
            p_t = torch.softmax(model({"x": x_t}), -1).double().numpy()
        confusion += p_s.T @ np.eye(3)[y.numpy()] / 12
        target_mean += p_t.sum(0) / 12
    method.training_loss(model, {"x": batches[0][0]}, batches[0][1], {"x": batches[0][2]}, 0.1)
    assert torch.equal(method.class_weights, torch.ones(3))  # one step: no estimate yet
    method.training_loss(model, {"x": batches[1][0]}, batches[1][1], {"x": batches[1][2]}, 0.1)
    expected = 0.5 + 0.5 * capped_ratios(class_ratios(confusion, target_mean), confusion.sum(0))
    assert np.allclose(method.class_weights.numpy(), expected, atol=1e-6)
    assert float(method.counts.sum()) == 0 and float(method.confusion_sum.abs().sum()) == 0
    shares = method.source_class_shares * method.class_weights
    assert torch.allclose(method.target_class_shares, shares / shares.sum())


def test_every_parameter_gets_a_gradient_and_a_regression_or_bad_option_is_refused():
    model, method = small()
    method.class_weights.copy_(torch.tensor([3.0, 0.0, 0.0]))  # rows of classes 1 and 2 count for nothing
    x = {"x": torch.randn(6, 4)}
    loss = method.training_loss(
        model.train(), x, torch.tensor([0, 1, 2, 0, 1, 2]), {"x": torch.randn(6, 4)}, 0.5
    )
    loss.backward()
    for name, p in list(model.named_parameters()) + list(method.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert ImportanceWeightedDANN.supports_regression is False
    with pytest.raises(ConfigError, match="update_every"):
        ImportanceWeightedDANN(update_every=0)
    with pytest.raises(ConfigError, match="momentum"):
        ImportanceWeightedDANN(momentum=1.0)


def test_a_run_under_label_shift_estimates_the_target_shares_and_writes_them(tmp_path):
    """Two blobs, 80/20 on the source and 20/80 on the target: a few epochs of IWDAN move its estimate of
    the target's shares past the source's towards the target's, and ``metrics.json`` holds it."""
    from crossfuse.config import load_config
    from crossfuse.runner import run_experiment
    from tests.conftest import write_folder

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(320), np.ones(80), np.zeros(80), np.ones(320)].astype(int)
    domains = np.array(["s"] * 400 + ["t"] * 400)
    x = (rng.normal(size=(800, 5)) + 3 * labels[:, None]).astype(np.float32)
    folder = write_folder(tmp_path / "f", {"x": x}, labels, domains)
    values = dict(data=str(folder), source=["s"], target=["t"], transfer="iwdan", epochs=3, seed=0)
    metrics = run_experiment(load_config(None, values), tmp_path / "run", log=lambda _: None)
    shares = metrics["estimated_target_class_shares"]
    assert len(shares) == 2 and sum(shares) == pytest.approx(1.0, abs=1e-3)
    assert shares[1] > 0.6, shares  # the source has 20% of class 1, the target 80%
    assert metrics["target_accuracy"] > 0.9
