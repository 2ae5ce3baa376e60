"""Each transfer loss recomputed by hand for a fixed small batch."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crossfuse.model import build_model
from crossfuse.transfer.base import StepOutputs
from crossfuse.transfer.coral import coral_loss, covariance
from crossfuse.transfer.dann import DANN
from crossfuse.transfer.gradient_reversal import dann_lambda, reverse_gradient
from crossfuse.transfer.mixup import DomainMixup, balanced_pseudo_labels, label_shares, mix, mixed_targets
from crossfuse.transfer.mmd import multi_kernel_mmd


def batch(seed, n=6, d=4):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64)


def test_coral_matches_numpy():
    s, t = batch(0), batch(1, n=9) * 2 + 1
    cs, ct = np.cov(s.numpy(), rowvar=False), np.cov(t.numpy(), rowvar=False)
    np.testing.assert_allclose(covariance(s).numpy(), cs, atol=1e-12)
    expected = ((cs - ct) ** 2).sum() / (4 * 4**2)
    assert coral_loss(s, t).item() == pytest.approx(expected, rel=1e-12)


def test_mmd_matches_explicit_sums():
    s, t = batch(0, n=4, d=3), batch(1, n=5, d=3) + 0.5
    joined = torch.cat([s, t]).numpy()
    n = len(joined)
    squared = np.array([[((a - b) ** 2).sum() for b in joined] for a in joined])
    sigma2 = squared.sum() / (n * n - n)

    def k(a, b):
        d2 = ((a - b) ** 2).sum()
        return sum(math.exp(-d2 / (sigma2 * m)) for m in (0.25, 0.5, 1.0, 2.0, 4.0))

    sn, tn = s.numpy(), t.numpy()
    kss = np.mean([k(a, b) for a in sn for b in sn])
    ktt = np.mean([k(a, b) for a in tn for b in tn])
    kst = np.mean([k(a, b) for a in sn for b in tn])
    assert multi_kernel_mmd(s, t).item() == pytest.approx(kss + ktt - 2 * kst, rel=1e-10)
    assert multi_kernel_mmd(s, s).item() == pytest.approx(0.0, abs=1e-12)


def test_dann_lambda_schedule():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_lambda(1.0) == pytest.approx(0.99991, abs=1e-5)


def test_dann_domain_loss_by_hand():
    method = DANN()
    method.setup(None, {"fused": 4})
    method.double()
    s, t = batch(0), batch(1)
    classifier = method.classifiers["fused"]
    zs, zt = classifier(s), classifier(t)
    expected = 0.5 * (-torch.log(1 - torch.sigmoid(zs))).mean() + 0.5 * (-torch.log(torch.sigmoid(zt))).mean()
    assert method.domain_loss(s, t, "fused", 0.3).item() == pytest.approx(expected.item(), rel=1e-10)


def test_gradient_through_reversal_is_minus_lambda_times_domain_gradient():
    torch.manual_seed(0)
    method = DANN()
    method.setup(None, {"fused": 4})
    method.double()
    lam = dann_lambda(0.37)
    features = batch(0).requires_grad_(True)
    target = batch(1)
    method.domain_loss(features, target, "fused", lam).backward()
    reversed_grad = features.grad.clone()
    plain = batch(0).requires_grad_(True)
    method.domain_loss(plain, target, "fused", -1.0).backward()  # coefficient -1: the plain gradient
    assert reversed_grad.abs().sum() > 0
    assert torch.allclose(reversed_grad, -lam * plain.grad, atol=1e-14)
    x = torch.ones(3, requires_grad=True)
    reverse_gradient(x, 2.0).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -2.0))


def test_mixup_inputs_and_targets_by_hand():
    s, t = batch(0, n=3), batch(1, n=3)
    lam = torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)
    expected = torch.stack([lam[i] * s[i] + (1 - lam[i]) * t[i] for i in range(3)])
    assert torch.allclose(mix(s, t, lam), expected)
    images_s, images_t = torch.ones(3, 1, 2, 2), torch.zeros(3, 1, 2, 2)
    assert torch.allclose(mix(images_s, images_t, lam.float())[:, 0, 0, 0], lam.float())
    labels = torch.tensor([2, 0, 1])
    logits = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 5.0, 0.0]], dtype=torch.float64)
    spec = mixed_targets(labels, logits, lam, "none", 3)
    assert torch.allclose(spec, torch.tensor([[0, 0, 0.2], [0.5, 0, 0], [0, 1.0, 0]], dtype=torch.float64))
    pseudo = mixed_targets(labels, logits, lam, "pseudo", 3)
    probabilities = torch.softmax(logits, -1)
    assert torch.allclose(pseudo[1], torch.tensor([0.5, 0, 0], dtype=torch.float64) + 0.5 * probabilities[1])
    assert torch.allclose(pseudo.sum(1), torch.ones(3, dtype=torch.float64))
    hard = mixed_targets(labels, logits, lam, "hard", 3)
    assert torch.allclose(
        hard, torch.tensor([[0.8, 0, 0.2], [0.5, 0, 0.5], [0, 1.0, 0]], dtype=torch.float64)
    )


def test_balanced_pseudo_labels_by_hand():
    # the model piles the target into class 0: mean probabilities (0.7, 0.2, 0.1)
    probabilities = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.6, 0.1, 0.3]], dtype=torch.float64)
    logits = probabilities.clamp_min(1e-12).log()
    uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
    # relative p_c / pbar_c: row 0 (1.29, 0.5, 0), row 1 (0.86, 2, 0), row 2 (0.86, 0.5, 3)
    assert balanced_pseudo_labels(logits, uniform).tolist() == [0, 1, 2]
    assert logits.argmax(-1).tolist() == [0, 0, 0]
    # a source that is mostly class 0 keeps the pile: p_c pi_c / pbar_c, rows (1.03, 0.05, 0),
    # (0.69, 0.2, 0) and (0.69, 0.05, 0.3)
    lopsided = torch.tensor([0.8, 0.1, 0.1], dtype=torch.float64)
    assert balanced_pseudo_labels(logits, lopsided).tolist() == [0, 0, 0]
    # predictions already in the source's shares are left as they are
    even = torch.tensor([[0.8, 0.2], [0.2, 0.8]], dtype=torch.float64).log()
    assert balanced_pseudo_labels(even, torch.tensor([0.5, 0.5], dtype=torch.float64)).tolist() == [0, 1]
    # without the source's shares: the batch's labels, one added to each count
    assert torch.allclose(
        label_shares(torch.tensor([0, 0, 1]), 3), torch.tensor([3.0, 2, 1], dtype=torch.float64) / 6
    )
    lam = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)
    mixed = mixed_targets(torch.tensor([1, 2, 0]), logits, lam, "balanced", 3, uniform)
    expected = torch.tensor([[0.75, 0.25, 0], [0, 0.5, 0.5], [1.0, 0, 0]], dtype=torch.float64)
    assert torch.allclose(mixed, expected)


def test_a_run_gives_the_method_the_source_class_shares():
    from crossfuse.train.lifecycle import start_method

    model = build_model({"x": (4,)}, 3, fusion="late", hidden_dim=8)
    method = DomainMixup()
    x = {"x": np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)}
    start_method(method, model, x, x, seed=0, source_labels=np.array([0, 0, 0, 2, -1, 2]))
    assert torch.allclose(method.source_class_shares, torch.tensor([0.6, 0.0, 0.4]))  # -1 has no label


def test_mixup_training_loss_by_hand():
    torch.manual_seed(0)
    model = build_model({"x": (4,)}, 3, fusion="late", hidden_dim=8).eval()
    source, target = {"x": batch(0).float()}, {"x": batch(1).float()}
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    method = DomainMixup(target_labels="none")
    torch.manual_seed(5)
    loss = method.training_loss(model, source, labels, target, 0.3)
    torch.manual_seed(5)
    lam = method.sample_lambda(6)
    mixed_logits = model({"x": mix(source["x"], target["x"], lam)})
    mixed_loss = (lam * F.cross_entropy(mixed_logits, labels, reduction="none")).mean()
    expected = F.cross_entropy(model(source), labels) + dann_lambda(0.3) * mixed_loss
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_aligned_pairs_pick_the_spaces():
    f = {"a": torch.zeros(2, 3), "b": torch.ones(2, 3)}
    outputs = StepOutputs(f, f, torch.zeros(2, 4), torch.ones(2, 4), torch.zeros(2, 2), torch.zeros(2, 2))
    assert list(outputs.aligned_pairs("fused")) == ["fused"]
    assert list(outputs.aligned_pairs("modalities")) == ["a", "b"]
    assert list(outputs.aligned_pairs("both")) == ["a", "b", "fused"]


def test_minimum_class_confusion_by_hand():
    from crossfuse.transfer.mcc import class_confusion_loss

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 2.5]])
    T, B, C = 2.5, 4, 3
    y = [[math.exp(v / T) for v in row] for row in logits.tolist()]
    y = [[v / sum(row) for v in row] for row in y]
    h = [-sum(p * math.log(p) for p in row) for row in y]
    w = [1 + math.exp(-e) for e in h]
    w = [B * v / sum(w) for v in w]
    conf = [[sum(w[i] * y[i][j] * y[i][k] for i in range(B)) for k in range(C)] for j in range(C)]
    col = [sum(conf[j][k] for j in range(C)) for k in range(C)]
    norm = [[conf[j][k] / col[k] for k in range(C)] for j in range(C)]
    expected = sum(norm[j][k] for j in range(C) for k in range(C) if j != k) / C
    assert float(class_confusion_loss(logits, T)) == pytest.approx(expected, rel=1e-5)
    confident = torch.eye(3) * 20  # every class predicted once, with certainty: no confusion
    assert float(class_confusion_loss(confident, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_mimicry_heads_and_loss_by_hand():
    from crossfuse.transfer.mimicry import CrossModalMimicry

    torch.manual_seed(0)
    model = build_model({"a": (4,), "b": (3,)}, 3, "late", hidden_dim=6, dropout=0.0)
    method = CrossModalMimicry(source_weight=1.0, target_weight=0.5)
    method.setup(model, {"a": 6, "b": 6, "fused": 6})
    assert set(method.heads) == {"a", "b"} and method.heads["a"].out_features == 3
    features = {"a": torch.randn(5, 6), "b": torch.randn(5, 6)}
    p = {m: torch.softmax(method.heads[m](f), 1) for m, f in features.items()}
    q = {m: torch.softmax(method.mimics[m](f), 1) for m, f in features.items()}
    by_hand = sum(
        (p[other] * (p[other].log() - q[m].log())).sum(1).mean() for m, other in (("a", "b"), ("b", "a"))
    )
    torch.testing.assert_close(method.cross_modal(features), by_hand)
    # the teacher is detached: the mimic loss moves the mimic heads and encoders, never the other main head
    method.cross_modal(features).backward()
    assert method.heads["a"].weight.grad is None and method.mimics["a"].weight.grad is not None


def test_mimicry_refuses_early_fusion_and_a_single_modality():
    from crossfuse.errors import ConfigError
    from crossfuse.transfer.mimicry import CrossModalMimicry

    early = build_model({"a": (4,), "b": (3,)}, 3, "early", hidden_dim=6)
    with pytest.raises(ConfigError, match="early fusion"):
        CrossModalMimicry().setup(early, {"a": 4, "b": 3, "fused": 6})
    single = build_model({"a": (4,)}, 3, "late", hidden_dim=6)
    with pytest.raises(ConfigError, match="at least two modalities"):
        CrossModalMimicry().setup(single, {"a": 6, "fused": 6})


def test_cdan_entropy_weighted_conditional_loss_by_hand():
    from crossfuse.transfer.cdan import CDAN, MultilinearMap

    torch.manual_seed(0)
    model = build_model({"x": (4,)}, 3, "late", hidden_dim=5, dropout=0.0)
    method = CDAN()
    method.setup(model, {"x": 5, "fused": 5})
    assert not method.map.randomised and method.map.output_dim == 15
    fs, ft = torch.randn(4, 5), torch.randn(6, 5)
    ls, lt = torch.randn(4, 3), torch.randn(6, 3)
    outputs = StepOutputs({}, {}, fs, ft, ls, lt)

    def half(f, logits, label):
        g = torch.softmax(logits, 1)
        joint = torch.stack([torch.outer(f[i], g[i]).flatten() for i in range(len(f))])
        d = method.classifier(joint)
        bce = -(label * F.logsigmoid(d) + (1 - label) * F.logsigmoid(-d))
        h = -(g * g.log()).sum(1)
        w = 1 + torch.exp(-h)
        return (w / w.sum() * bce).sum()

    expected = 0.5 * (half(fs, ls, 0.0) + half(ft, lt, 1.0))
    torch.testing.assert_close(method.alignment_loss(outputs, progress=0.5), expected)
    big = MultilinearMap(100, 50)  # 5000 entries: randomised
    f, g = torch.randn(2, 100), torch.softmax(torch.randn(2, 50), 1)
    by_hand = (f @ big.features_projection.T) * (g @ big.predictions_projection.T) / 1024**0.5
    assert big.randomised and big.output_dim == 1024
    torch.testing.assert_close(big(f, g), by_hand)


def test_cdan_reverses_the_gradient_into_the_features():
    from crossfuse.transfer.cdan import CDAN

    torch.manual_seed(0)
    model = build_model({"x": (4,)}, 3, "late", hidden_dim=5, dropout=0.0)
    method = CDAN()
    method.setup(model, {"x": 5, "fused": 5})
    fs = torch.randn(4, 5, requires_grad=True)
    ft = torch.randn(4, 5, requires_grad=True)
    outputs = StepOutputs({}, {}, fs, ft, torch.randn(4, 3), torch.randn(4, 3))
    method.alignment_loss(outputs, progress=1.0).backward()
    grad_reversed = fs.grad.clone()
    fs.grad = None
    method.alignment_loss(outputs, progress=0.0).backward()  # lambda_0 = 0: nothing reaches the features
    assert grad_reversed.abs().sum() > 0 and fs.grad.abs().sum() == 0


def test_correspondence_loss_by_hand_and_every_pair_gets_a_classifier():
    from crossfuse.transfer.correspondence import ModalityCorrespondence, correspondence_loss

    torch.manual_seed(0)
    classifier = torch.nn.Linear(5, 1)
    a, b = torch.randn(4, 3), torch.randn(4, 2)
    matched = classifier(torch.cat([a, b], 1)).squeeze(1)
    rolled = classifier(torch.cat([a, b[[3, 0, 1, 2]]], 1)).squeeze(1)  # roll by 1: row i meets b_{i-1}
    expected = (-F.logsigmoid(matched).mean() - F.logsigmoid(-rolled).mean()) / 2
    loss = correspondence_loss(lambda x: classifier(x).squeeze(1), a, b, shift=1)
    torch.testing.assert_close(loss, expected)
    model = build_model({"a": (4,), "b": (3,), "c": (2,)}, 3, "late", hidden_dim=6)
    method = ModalityCorrespondence()
    method.setup(model, {"a": 6, "b": 6, "c": 6, "fused": 6})
    assert method.pairs == [("a", "b"), ("a", "c"), ("b", "c")] and set(method.classifiers) == {"a", "b", "c"}


def test_shot_information_maximisation_and_cluster_labels_by_hand():
    from crossfuse.transfer.shot import cluster_pseudo_labels, information_maximisation

    p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    conditional = -(p * p.log()).sum(1).mean()
    marginal = p.mean(0)
    torch.testing.assert_close(information_maximisation(p), conditional + (marginal * marginal.log()).sum())
    # two well separated clusters, predictions that get one row wrong: clustering fixes it
    features = torch.tensor([[5.0, 0.0], [4.0, 0.5], [4.5, 0.2], [0.0, 5.0], [0.3, 4.0]])
    probabilities = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.1, 0.9], [0.2, 0.8]])
    assert cluster_pseudo_labels(features, probabilities).tolist() == [0, 0, 0, 1, 1]


class NoSource(dict):
    """A stand-in for the source rows that fails on any read: the source-free phase must not touch it."""

    def __getitem__(self, key):
        raise AssertionError("the source data was read")

    def items(self):
        raise AssertionError("the source data was read")

    def values(self):
        raise AssertionError("the source data was read")


def test_shot_adapts_on_target_alone_and_keeps_the_head():
    from crossfuse.transfer.shot import SHOT

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    target = {"x": rng.normal(size=(40, 4)).astype(np.float32)}
    model = build_model({"x": (4,)}, 3, "late", hidden_dim=8)
    model.fit_normalizers(target)
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    encoder = {k: v.clone() for k, v in model.encoders.state_dict().items()}
    method = SHOT(epochs=2, batch_size=16)
    method.after_training(model, None, NoSource(), lr=1e-2, seed=0, target=target)
    assert all(torch.equal(head[k], v) for k, v in model.head.state_dict().items())
    assert any(not torch.equal(encoder[k], v) for k, v in model.encoders.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_importance_weights_are_computed_once_per_row_and_looked_up():
    from crossfuse.transfer.importance_weighting import ImportanceWeighting

    rng = np.random.default_rng(0)
    source = {"x": rng.normal(size=(50, 4)).astype(np.float32)}
    target = {"x": (rng.normal(size=(50, 4)) + 0.7).astype(np.float32)}
    method = ImportanceWeighting()
    method.prepare(source, target, seed=0)
    rows = torch.tensor([3, 17, 17, 42, 0])
    batch = {"x": torch.from_numpy(source["x"][rows.numpy()])}
    method.batch_source_rows = rows
    looked_up = method.source_weights(batch)
    method.batch_source_rows = None
    computed = method.source_weights(batch)
    assert torch.allclose(looked_up, computed)
    assert not torch.allclose(looked_up, torch.ones(5)), "the shift gives unequal weights"


def test_batch_nuclear_norm_by_hand():
    from crossfuse.transfer.bnm import batch_nuclear_norm_loss

    # two classes: the singular values of A (B x 2) are the square roots of the eigenvalues of the
    # 2 x 2 Gram matrix A^T A = [[a, b], [b, c]], (a + c)/2 +- sqrt(((a - c)/2)^2 + b^2)
    logits = torch.tensor([[2.0, 0.5], [0.1, 0.2], [-1.0, 3.0], [0.0, 0.0], [1.5, -0.5]], dtype=torch.float64)
    p = [1 / (1 + math.exp(z1 - z0)) for z0, z1 in logits.tolist()]
    rows = [(q, 1 - q) for q in p]
    a = sum(x * x for x, _ in rows)
    c = sum(y * y for _, y in rows)
    b = sum(x * y for x, y in rows)
    root = math.sqrt(((a - c) / 2) ** 2 + b * b)
    nuclear = math.sqrt((a + c) / 2 + root) + math.sqrt((a + c) / 2 - root)
    assert batch_nuclear_norm_loss(logits).item() == pytest.approx(-nuclear / 5, rel=1e-12)
    # several classes: ||A||_* = sum of the square roots of the eigenvalues of A^T A
    many = batch(11, n=7, d=4)
    probabilities = np.exp(many.numpy()) / np.exp(many.numpy()).sum(1, keepdims=True)
    eigenvalues = np.linalg.eigvalsh(probabilities.T @ probabilities).clip(0)
    assert batch_nuclear_norm_loss(many).item() == pytest.approx(-np.sqrt(eigenvalues).sum() / 7, rel=1e-10)
    # the extremes the docstring names: a collapsed confident batch, and one covering every class
    collapsed = torch.zeros(6, 3, dtype=torch.float64)
    collapsed[:, 0] = 40
    diverse = torch.eye(3, dtype=torch.float64).repeat(2, 1) * 40
    assert batch_nuclear_norm_loss(collapsed).item() == pytest.approx(-math.sqrt(6) / 6, rel=1e-9)
    assert batch_nuclear_norm_loss(diverse).item() == pytest.approx(-math.sqrt(18) / 6, rel=1e-9)


def test_bnm_acts_on_target_predictions_only():
    from crossfuse.transfer.bnm import BatchNuclearNormMaximization

    logits_s, logits_t = batch(12, n=4, d=3).requires_grad_(), batch(13, n=4, d=3).requires_grad_()
    outputs = StepOutputs({}, {}, batch(14, n=4, d=5), batch(15, n=4, d=5), logits_s, logits_t)
    BatchNuclearNormMaximization().alignment_loss(outputs, 0.3).backward()
    assert logits_s.grad is None and logits_t.grad.abs().sum() > 0


def test_joint_mmd_matches_explicit_sums_of_the_product_kernel():
    from crossfuse.transfer.jan import joint_mmd

    s, t = batch(2, n=4, d=3), batch(3, n=5, d=3) + 0.5
    ps, pt = torch.softmax(batch(4, n=4, d=3), 1), torch.softmax(batch(5, n=5, d=3) * 2, 1)
    joined = torch.cat([s, t]).numpy()
    n = len(joined)
    sigma2 = sum(((a - b) ** 2).sum() for a in joined for b in joined) / (n * n - n)

    def k(i, j, rows, probs):
        d2 = ((rows[i] - rows[j]) ** 2).sum()
        features = sum(math.exp(-d2 / (sigma2 * m)) for m in (0.25, 0.5, 1.0, 2.0, 4.0))
        return features * math.exp(-((probs[i] - probs[j]) ** 2).sum() / (2 * 0.92**2))

    rows, probs = joined, torch.cat([ps, pt]).numpy()
    source, target = range(4), range(4, 9)
    kss = np.mean([k(i, j, rows, probs) for i in source for j in source])
    ktt = np.mean([k(i, j, rows, probs) for i in target for j in target])
    kst = np.mean([k(i, j, rows, probs) for i in source for j in target])
    assert joint_mmd(s, t, ps, pt).item() == pytest.approx(kss + ktt - 2 * kst, rel=1e-10)
    assert joint_mmd(s, s, ps, ps).item() == pytest.approx(0.0, abs=1e-12)
    # the same features with other predictions still differ: the joint law, not the marginal, is matched
    assert joint_mmd(s, s, ps, torch.softmax(batch(6, n=4, d=3), 1)).item() > 1e-3


def test_jan_pulls_gradients_through_the_predictions_and_ramps_in():
    from crossfuse.transfer.jan import JointAdaptation

    method = JointAdaptation()
    logits_s, logits_t = batch(7, n=4, d=3).requires_grad_(), batch(8, n=4, d=3).requires_grad_()
    f_s, f_t = batch(9, n=4, d=5), batch(10, n=4, d=5) + 1.0
    outputs = StepOutputs({}, {}, f_s, f_t, logits_s, logits_t)
    assert method.alignment_loss(outputs, 0.0).item() == 0.0  # lambda_0 = 0
    method.alignment_loss(outputs, 0.5).backward()
    assert logits_s.grad.abs().sum() > 0 and logits_t.grad.abs().sum() > 0


def test_conditional_entropy_by_hand():
    from crossfuse.transfer.vada import conditional_entropy

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    rows = []
    for z in logits.tolist():
        e = [math.exp(v) for v in z]
        rows.append(-sum(v / sum(e) * math.log(v / sum(e)) for v in e))
    value = conditional_entropy(logits)
    assert value.item() == pytest.approx(sum(rows) / 2, rel=1e-12)
    assert rows[1] == pytest.approx(math.log(3))
    value.backward()
    assert logits.grad[0].abs().sum() > 0, "the gradient flows through the probabilities"
    assert logits.grad[1].abs().max() < 1e-12, "the uniform row is a stationary point"


def test_virtual_adversarial_kl_is_the_power_iteration_of_the_fisher_matrix():
    """For logits linear in the inputs, ``z = z0 + M r`` in normalised units with ``M = [A diag(s_a),
    B diag(s_b)]``, the Hessian of ``KL(p || softmax(z0 + M r))`` at ``r = 0`` is ``M^T (diag p - p p^T)
    M``; one power iteration from ``d`` gives ``r_adv = radius H d / ||H d||``."""
    from crossfuse.transfer.vada import virtual_adversarial_kl

    generator = torch.Generator().manual_seed(21)
    n, classes = 4, 3
    a = torch.randn(classes, 5, generator=generator, dtype=torch.float64)
    b = torch.randn(classes, 2, generator=generator, dtype=torch.float64)
    inputs = {
        "a": torch.randn(n, 5, generator=generator, dtype=torch.float64),
        "b": torch.randn(n, 2, generator=generator, dtype=torch.float64),
    }
    scales = {
        "a": torch.rand(5, generator=generator, dtype=torch.float64) + 0.5,
        "b": torch.tensor([2.0, 0.25], dtype=torch.float64),
    }
    directions = {
        "a": torch.randn(n, 5, generator=generator, dtype=torch.float64),
        "b": torch.randn(n, 2, generator=generator, dtype=torch.float64),
    }

    def forward(x):
        return x["a"] @ a.T + x["b"] @ b.T

    logits = forward(inputs)
    radius = 0.7
    got = virtual_adversarial_kl(forward, inputs, logits, scales, radius, xi=1e-7, directions=directions)

    m = torch.cat([a * scales["a"], b * scales["b"]], dim=1).numpy()
    d = torch.cat([directions["a"], directions["b"]], dim=1).numpy()
    z0 = logits.numpy()
    for i in range(n):
        p = np.exp(z0[i] - z0[i].max())
        p /= p.sum()
        hessian = m.T @ (np.diag(p) - np.outer(p, p)) @ m
        step = hessian @ d[i]
        r = radius * step / np.linalg.norm(step)
        z = z0[i] + m @ r
        q = np.exp(z - z.max())
        q /= q.sum()
        expected = float((p * np.log(p / q)).sum())
        assert got[i].item() == pytest.approx(expected, rel=1e-5)
    # the adversarial direction beats a random one of the same radius
    random_r = radius * d[0] / np.linalg.norm(d[0])
    z = z0[0] + m @ random_r
    q = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    p = np.exp(z0[0] - z0[0].max()) / np.exp(z0[0] - z0[0].max()).sum()
    assert got[0].item() > float((p * np.log(p / q)).sum())


def test_vada_is_dann_plus_entropy_and_smoothing_with_the_radius_scaled_to_the_inputs():
    from crossfuse.transfer.base import run_model
    from crossfuse.transfer.vada import VADA, conditional_entropy, input_scales, virtual_adversarial_kl

    torch.manual_seed(0)
    model = build_model({"a": (6,), "b": (3,)}, n_classes=3, fusion="late", hidden_dim=8, dropout=0.3)
    source = {"a": batch(31, n=5, d=6).float(), "b": batch(32, n=5, d=3).float()}
    target = {"a": batch(33, n=5, d=6).float() + 1, "b": batch(34, n=5, d=3).float() - 1}
    labels = torch.tensor([0, 1, 2, 0, 1])
    method = VADA(source_weight=0.7, target_weight=0.05, radius=0.2)
    model.fit_normalizers({m: x.numpy() for m, x in source.items()})
    method.setup(model, {"a": 8, "b": 8, "fused": model.fuse(model.encode(source)).shape[1]})

    torch.manual_seed(5)
    loss = method.training_loss(model, source, labels, target, progress=0.4)
    torch.manual_seed(5)
    outputs = run_model(model, source, target)
    joined = {m: torch.cat([source[m], target[m]]) for m in ("a", "b")}
    model.eval()  # the smoothness is that of the predictor without dropout
    with torch.no_grad():
        reference = model(joined)
    kl = virtual_adversarial_kl(model, joined, reference, input_scales(model, joined), 0.2 * math.sqrt(9))
    model.train()
    expected = (
        F.cross_entropy(outputs.source_logits, labels)
        + DANN.alignment_loss(method, outputs, 0.4)
        + 0.05 * conditional_entropy(outputs.target_logits)
        + 0.7 * kl[:5].mean()
        + 0.05 * kl[5:].mean()
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert float(kl.detach().min()) > 0, "every row's perturbation changes its prediction"
    off = VADA(source_weight=0.0, target_weight=0.0)
    off.classifiers = method.classifiers
    torch.manual_seed(5)
    dann_only = off.training_loss(model, source, labels, target, progress=0.4)
    torch.manual_seed(5)
    outputs = run_model(model, source, target)
    plain = F.cross_entropy(outputs.source_logits, labels) + DANN.alignment_loss(method, outputs, 0.4)
    assert dann_only.item() == pytest.approx(plain.item(), rel=1e-6)
