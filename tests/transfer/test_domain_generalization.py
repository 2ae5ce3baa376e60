"""Domain generalisation and multi-source adaptation: each loss recomputed by hand from per-domain
statistics, the source domains reaching the method, and weight averaging."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crossfuse.errors import ConfigError
from crossfuse.model import build_model
from crossfuse.train.lifecycle import start_method
from crossfuse.train.loop import SWA_START, Trainer, TrainSettings
from crossfuse.transfer import TRANSFERS
from crossfuse.transfer.base import StepOutputs
from crossfuse.transfer.coral_domains import DomainCORAL, pairwise_coral
from crossfuse.transfer.dann_domains import DomainAdversarialDG
from crossfuse.transfer.group_dro import GroupDRO
from crossfuse.transfer.m3sda import MomentMatching, moment_distance
from crossfuse.transfer.mixup_domains import InterDomainMixup, other_domain_partners
from crossfuse.transfer.vrex import VarianceRiskExtrapolation

SHAPES = {"seq": (5, 3), "vec": (4,)}


def arrays(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return {m: (rng.normal(size=(n, *s)) + shift).astype(np.float32) for m, s in SHAPES.items()}


def tensors(a):
    return {m: torch.from_numpy(x) for m, x in a.items()}


def numpy_moment_gap(a: np.ndarray, b: np.ndarray) -> float:
    d = a.shape[1]
    mean_gap = ((a.mean(0) - b.mean(0)) ** 2).sum() / d
    cov_gap = ((np.cov(a, rowvar=False) - np.cov(b, rowvar=False)) ** 2).sum() / d**2
    return mean_gap + cov_gap


def test_coral_across_domains_is_the_mean_pairwise_moment_gap_by_hand():
    rng = np.random.default_rng(0)
    groups = [rng.normal(size=(7, 3)) + k for k in range(3)]
    expected = np.mean([numpy_moment_gap(a, b) for a, b in itertools.combinations(groups, 2)])
    found = pairwise_coral([torch.from_numpy(g) for g in groups])
    assert float(found) == pytest.approx(expected, rel=1e-10)


def test_coral_dg_training_loss_groups_the_batch_by_source_domain():
    torch.manual_seed(0)
    model = build_model(SHAPES, n_classes=3, fusion="late", hidden_dim=6, dropout=0.0)
    method = DomainCORAL()
    source = arrays(12, 0)
    start_method(method, model, source, {m: x[:0] for m, x in source.items()}, seed=0, n_source_domains=3)
    domains = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 0])
    method.batch_source_domains = domains
    labels = torch.arange(12) % 3
    model.eval()
    loss = method.training_loss(model, tensors(source), labels, {}, progress=0.5)
    fused = model.fuse(model.encode(tensors(source))).detach().double().numpy()
    groups = [fused[domains.numpy() == k] for k in range(3)]
    penalty = np.mean([numpy_moment_gap(a, b) for a, b in itertools.combinations(groups, 2)])
    expected = F.cross_entropy(model(tensors(source)), labels).item() + penalty
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_multi_class_domain_loss_by_hand():
    torch.manual_seed(0)
    model = build_model(SHAPES, n_classes=3, fusion="late", hidden_dim=6, dropout=0.0)
    method = DomainAdversarialDG(align="fused")
    source = arrays(9, 1)
    start_method(method, model, source, {m: x[:0] for m, x in source.items()}, seed=0, n_source_domains=3)
    assert method.classifiers["fused"].net[-1].out_features == 3, "one output per source domain"
    domains = torch.tensor([2, 0, 1, 1, 2, 0, 0, 1, 2])
    method.batch_source_domains = domains
    labels = torch.arange(9) % 3
    model.eval()
    loss = method.training_loss(model, tensors(source), labels, {}, progress=0.3)
    fused = model.fuse(model.encode(tensors(source)))
    logits = method.classifiers["fused"](fused)
    by_hand = -torch.log_softmax(logits, 1)[torch.arange(9), domains].mean()
    expected = F.cross_entropy(model(tensors(source)), labels) + by_hand
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # the reversal: the encoders get minus lambda times the domain loss's gradient
    fused_leaf = fused.detach().requires_grad_(True)
    from crossfuse.transfer.gradient_reversal import dann_lambda, reverse_gradient

    lam = dann_lambda(0.3)
    F.cross_entropy(method.classifiers["fused"](reverse_gradient(fused_leaf, lam)), domains).backward()
    reversed_grad = fused_leaf.grad.clone()
    fused_leaf.grad = None
    F.cross_entropy(method.classifiers["fused"](fused_leaf), domains).backward()
    assert torch.allclose(reversed_grad, -lam * fused_leaf.grad)


def test_inter_domain_mixup_pairs_rows_of_other_domains_and_mixes_labels_by_hand():
    torch.manual_seed(0)
    domains = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    for _ in range(20):
        partners = other_domain_partners(domains)
        assert (domains[partners] != domains).all(), "every partner comes from another domain"
    assert (other_domain_partners(torch.zeros(4, dtype=torch.long)) == torch.arange(4)).all()

    model = build_model(SHAPES, n_classes=3, fusion="late", hidden_dim=6, dropout=0.0)
    method = InterDomainMixup(alpha=0.4)
    source = tensors(arrays(8, 2))
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    method.batch_source_domains = domains
    model.eval()
    torch.manual_seed(5)
    loss = method.training_loss(model, source, labels, {}, progress=0.5)
    torch.manual_seed(5)  # the same draws, by hand
    partners = other_domain_partners(domains)
    lam = torch.distributions.Beta(0.4, 0.4).sample((8,))
    mixed = {
        m: lam.view(-1, *([1] * (x.dim() - 1))) * x + (1 - lam.view(-1, *([1] * (x.dim() - 1)))) * x[partners]
        for m, x in source.items()
    }
    log_p = torch.log_softmax(model(mixed), 1)
    expected = -(
        lam * log_p[torch.arange(8), labels] + (1 - lam) * log_p[torch.arange(8), labels[partners]]
    ).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def started_dg(method, n_domains: int = 3):
    torch.manual_seed(0)
    model = build_model(SHAPES, n_classes=3, fusion="late", hidden_dim=6, dropout=0.0)
    source = arrays(9, 4)
    empty = {m: x[:0] for m, x in source.items()}
    start_method(method, model, source, empty, seed=0, n_source_domains=n_domains)
    return model.eval(), tensors(source)


def per_row_cross_entropy(model, source, labels) -> np.ndarray:
    with torch.no_grad():
        log_p = torch.log_softmax(model(source), 1).double().numpy()
    return -log_p[np.arange(len(labels)), labels.numpy()]


@pytest.mark.parametrize(("progress", "beta"), [(0.05, 1.0), (0.5, 10.0)])
def test_vrex_is_the_mean_domain_risk_plus_beta_times_their_variance_by_hand(progress, beta):
    method = VarianceRiskExtrapolation(penalty=10.0)
    model, source = started_dg(method)
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 0, 2, 1])
    method.batch_source_domains = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    loss = method.training_loss(model, source, labels, {}, progress=progress)
    rows = per_row_cross_entropy(model, source, labels)
    risks = np.array([rows[:3].mean(), rows[3:5].mean(), rows[5:].mean()])
    expected = risks.mean() + beta * ((risks - risks.mean()) ** 2).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert set(method.loss_parts) == {"source", "alignment"}


def test_group_dro_moves_weight_to_the_worse_domain_by_exponentiated_gradient_by_hand():
    method = GroupDRO(eta=0.5)
    model, source = started_dg(method)
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 0, 2, 1])
    method.batch_source_domains = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    rows = per_row_cross_entropy(model, source, labels)
    risks = np.array([rows[:3].mean(), rows[3:5].mean(), rows[5:].mean()])
    q = np.full(3, 1 / 3)
    for _ in range(2):  # two steps on the same batch: the weights compound
        q = q * np.exp(0.5 * risks)
        q /= q.sum()
        loss = method.training_loss(model, source, labels, {}, progress=0.5)
        assert loss.item() == pytest.approx(float(q @ risks), rel=1e-5)
        assert method.domain_weights.numpy() == pytest.approx(q, rel=1e-5)
    assert np.argmax(q) == np.argmax(risks)
    # a domain absent from the batch is not stepped; the loss renormalises q over the present ones
    method.batch_source_domains = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])
    present_risks = np.array([rows[:4].mean(), rows[4:].mean()])
    stepped = q.copy()
    stepped[:2] *= np.exp(0.5 * present_risks)
    stepped /= stepped.sum()
    loss = method.training_loss(model, source, labels, {}, progress=0.5)
    assert loss.item() == pytest.approx(float(stepped[:2] / stepped[:2].sum() @ present_risks), rel=1e-5)
    assert method.domain_weights.numpy() == pytest.approx(stepped, rel=1e-5)


def test_moment_distance_by_hand_and_m3sda_uses_each_source_domain():
    rng = np.random.default_rng(3)
    sources = [rng.normal(size=(5, 4)) + k for k in range(3)]
    target = rng.normal(size=(6, 4)) - 1
    expected = 0.0
    for k in (1, 2):
        moments = [(s**k).mean(0) for s in sources]
        t = (target**k).mean(0)
        expected += np.mean([np.linalg.norm(m - t) for m in moments])
        expected += np.mean([np.linalg.norm(a - b) for a, b in itertools.combinations(moments, 2)])
    found = moment_distance([torch.from_numpy(s) for s in sources], torch.from_numpy(target))
    assert float(found) == pytest.approx(expected, rel=1e-10)

    method = MomentMatching(warmup=False)
    method.n_source_domains = 3
    method.batch_source_domains = torch.tensor([0] * 5 + [1] * 5 + [2] * 5)
    joined = torch.from_numpy(np.vstack(sources))
    outputs = StepOutputs({}, {}, joined, torch.from_numpy(target), joined[:, :3], joined[:, :3])
    assert float(method.alignment_loss(outputs, 0.5)) == pytest.approx(expected, rel=1e-10)
    method.batch_source_domains = None  # pooled: one source, no source-source term
    pooled = float(moment_distance([joined], torch.from_numpy(target)))
    assert float(method.alignment_loss(outputs, 0.5)) == pytest.approx(pooled, rel=1e-10)
    from crossfuse.transfer.gradient_reversal import dann_lambda

    ramped = MomentMatching()
    ramped.batch_source_domains = None
    assert float(ramped.alignment_loss(outputs, 0.3)) == pytest.approx(dann_lambda(0.3) * pooled, rel=1e-10)


@pytest.mark.parametrize("name", ["coral-dg", "dann-dg", "mixup-dg"])
def test_methods_that_compare_sources_refuse_a_single_source_domain(name):
    model = build_model(SHAPES, n_classes=3, fusion="late", hidden_dim=6)
    source = arrays(8, 0)
    with pytest.raises(ConfigError, match=f"--transfer {name}: .*needs at least 2"):
        start_method(TRANSFERS[name](), model, source, {m: x[:0] for m, x in source.items()}, seed=0)


def test_the_trainer_hands_each_batch_its_source_domains():
    seen = []

    class Recorder(TRANSFERS["erm"]):
        def training_loss(self, model, source, labels, target, progress):
            seen.append((source["vec"][:, 0].clone(), self.batch_source_domains.clone()))
            return super().training_loss(model, source, labels, target, progress)

    source = arrays(40, 0)
    source["vec"][:, 0] = np.arange(40)  # a row's identity, readable from its batch
    domains = np.arange(40) % 3
    model = build_model(SHAPES, n_classes=2, fusion="late", hidden_dim=6)
    method = Recorder()
    empty = {m: x[:0] for m, x in source.items()}
    start_method(method, model, source, empty, seed=0, n_source_domains=3)
    settings = TrainSettings(epochs=1, batch_size=8, min_steps_per_epoch=3, early_stopping=False)
    labels = np.arange(40) % 2
    Trainer(
        model, method, (source, labels), (source, labels), empty, None, settings, seed=0, log=lambda _: None,
        source_domains=domains,
    ).fit()  # fmt: skip
    assert len(seen) >= 3
    for rows, given in seen:
        assert torch.equal(given, torch.from_numpy(domains[rows.long().numpy()]))


def test_swa_keeps_the_uniform_average_of_the_weights_after_its_start():
    torch.manual_seed(0)
    source = arrays(32, 0)
    labels = np.arange(32) % 2
    model = build_model(SHAPES, n_classes=2, fusion="late", hidden_dim=6, dropout=0.0)
    method = TRANSFERS["erm"]()
    empty = {m: x[:0] for m, x in source.items()}
    start_method(method, model, source, empty, seed=0)
    settings = TrainSettings(
        epochs=2, batch_size=8, min_steps_per_epoch=4, weight_averaging="swa", early_stopping=False
    )
    trainer = Trainer(
        model, method, (source, labels), (source, labels), empty, None, settings, seed=0, log=lambda _: None
    )
    snapshots = []
    step = trainer.step

    def recording_step(*args):
        loss = step(*args)
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return loss

    trainer.step = recording_step
    trainer.fit()
    total = len(snapshots)
    averaged = snapshots[int(SWA_START * total) :]
    assert 0 < len(averaged) < total
    key = next(k for k, _ in model.named_parameters() if not torch.equal(snapshots[0][k], snapshots[-1][k]))
    expected = torch.stack([s[key] for s in averaged]).mean(0)
    assert torch.allclose(trainer.average[key], expected, atol=1e-6)
    assert not torch.allclose(snapshots[-1][key], expected), "the average is not the last step's weights"
    assert trainer.state.averaged == len(averaged)
