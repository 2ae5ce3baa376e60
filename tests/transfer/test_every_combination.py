"""DomainBed style: every transfer method with every fusion takes a training step; DANN adapts."""

import numpy as np
import pytest
import torch

from crossfuse.errors import ConfigError
from crossfuse.fusion import FUSIONS
from crossfuse.model import build_model
from crossfuse.train.lifecycle import start_method
from crossfuse.train.loop import TrainingObjective
from crossfuse.transfer import DANN, TRANSFERS

SHAPES = {"seq": (6, 3), "vec": (5,)}
#: Combinations a method refuses, with a message naming the fusion (mimicry needs per-modality encoders).
REFUSED = {("mimicry", "early"), ("correspondence", "early")}


def arrays(n, shift, seed):
    rng = np.random.default_rng(seed)
    return {m: (rng.normal(size=(n, *s)) + shift).astype(np.float32) for m, s in SHAPES.items()}


@pytest.mark.parametrize("fusion", list(FUSIONS))
@pytest.mark.parametrize("transfer", list(TRANSFERS))
def test_one_training_step(transfer, fusion):
    torch.manual_seed(0)
    model = build_model(SHAPES, n_classes=3, fusion=fusion, hidden_dim=8)
    method = TRANSFERS[transfer]()
    source, target = arrays(16, 0.0, 0), arrays(16, 1.0, 1)
    labels = np.arange(16) % 3
    if (transfer, fusion) in REFUSED:
        with pytest.raises(ConfigError, match=fusion):
            start_method(method, model, source, target, seed=0)
        return
    # two source domains, so the domain-generalisation methods have differences to learn from
    start_method(method, model, source, target, seed=0, n_source_domains=2)
    method.batch_source_domains = torch.arange(16) % 2
    parameters = list(model.parameters()) + list(method.parameters())
    before = [p.detach().clone() for p in parameters]
    optimizer = torch.optim.Adam(parameters, lr=1e-2)
    to_t = lambda a: {m: torch.from_numpy(x) for m, x in a.items()}  # noqa: E731
    objective = TrainingObjective(model, method)
    loss = objective(to_t(source), torch.from_numpy(labels), to_t(target), progress=0.5)
    assert torch.isfinite(loss)
    parts = objective.loss_parts
    if method.uses_target or fusion == "nuclear":
        assert len(parts) > 1, "a loss of several terms names them"
    if parts:  # the named terms are the loss, added up
        assert torch.allclose(torch.stack(list(parts.values())).sum(), loss.detach(), rtol=1e-5, atol=1e-6)
    loss.backward()
    optimizer.step()
    changed = [not torch.equal(b, p) for b, p in zip(before, parameters, strict=True)]
    assert all(changed[: len(list(model.parameters()))]), "every model parameter moves"
    assert all(changed), "every transfer parameter (e.g. DANN's domain classifier) moves"
    if method.needs_target_shots:
        method.steps = 2
        method.after_training(model, (target, labels), (source, labels), lr=1e-3, seed=0)


@pytest.mark.parametrize("fusion", [f for f in FUSIONS if f != "early"])
@pytest.mark.parametrize("transfer", ["mimicry", "correspondence"])
def test_the_multimodal_methods_take_a_step_with_three_modalities(transfer, fusion):
    """Three modalities: correspondence has a classifier for each of the three pairs, mimicry a head and a
    mimic head for each modality; every parameter of model and method moves in one step."""
    shapes = {"seq": (6, 3), "vec": (5,), "wide": (9,)}
    rng = np.random.default_rng(0)
    source = {m: rng.normal(size=(16, *s)).astype(np.float32) for m, s in shapes.items()}
    target = {m: x + 1.0 for m, x in source.items()}
    torch.manual_seed(0)
    model = build_model(shapes, n_classes=3, fusion=fusion, hidden_dim=8)
    method = TRANSFERS[transfer]()
    start_method(method, model, source, target, seed=0)
    if transfer == "correspondence":
        assert method.pairs == [("seq", "vec"), ("seq", "wide"), ("vec", "wide")]
    parameters = list(model.parameters()) + list(method.parameters())
    before = [p.detach().clone() for p in parameters]
    optimizer = torch.optim.Adam(parameters, lr=1e-2)
    to_t = lambda a: {m: torch.from_numpy(x) for m, x in a.items()}  # noqa: E731
    labels = torch.arange(16) % 3
    method.training_loss(model, to_t(source), labels, to_t(target), progress=0.5).backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, parameters, strict=True))


def test_dann_domain_classifier_moves_to_chance_while_source_accuracy_stays_high():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 2, n)
    signal = np.where(labels == 0, -1.5, 1.5)[:, None]
    source = np.hstack([signal + 0.5 * rng.normal(size=(n, 1)), rng.normal(size=(n, 3))]).astype(np.float32)
    target_labels = rng.integers(0, 2, n)
    target = np.hstack(
        [
            np.where(target_labels == 0, -1.5, 1.5)[:, None] + 0.5 * rng.normal(size=(n, 1)),
            rng.normal(size=(n, 3)) + 2.5,
        ]
    ).astype(np.float32)
    model = build_model({"x": (4,)}, 2, fusion="late", hidden_dim=16, dropout=0.0)
    method = DANN(gamma=10.0)
    start_method(method, model, {"x": source}, {"x": target}, seed=0)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(method.parameters()), lr=1e-3)
    xs, xt, ys = torch.from_numpy(source), torch.from_numpy(target), torch.from_numpy(labels)
    steps, accuracies = 600, []
    for step in range(steps):
        rows = torch.randint(n, (64,))
        loss = method.training_loss(model, {"x": xs[rows]}, ys[rows], {"x": xt[rows]}, progress=step / steps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 9:
            with torch.no_grad():
                fs = model.fuse(model.encode({"x": xs}))
                ft = model.fuse(model.encode({"x": xt}))
            accuracies.append(method.domain_accuracy(fs, ft))
    with torch.no_grad():
        source_accuracy = (model({"x": xs}).argmax(1) == ys).float().mean().item()
    early, late = max(accuracies[: len(accuracies) // 2]), float(np.mean(accuracies[-5:]))
    assert early > 0.8, "the shift is visible to the domain classifier at first"
    assert late < 0.65 and late < early - 0.2, "adversarial training has aligned the domains"
    assert source_accuracy > 0.9
