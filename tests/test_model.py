import numpy as np
import pytest
import torch

from crossfuse.fusion import FUSIONS
from crossfuse.model import build_model
from crossfuse.normalize import Standardize

SHAPES = {"audio": (12, 5), "image": (1, 8, 8), "meta": (7,)}


def batch(n=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, *s, generator=generator) for m, s in SHAPES.items()}


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_every_model_parameter_gets_a_gradient_and_changes(fusion):
    torch.manual_seed(0)
    model = build_model(SHAPES, n_classes=3, fusion=fusion, hidden_dim=8)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    logits = model(batch())
    assert logits.shape == (6, 3)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0, 1, 2])) + model.penalty()
    loss.backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, key
    torch.optim.Adam(model.parameters(), lr=1e-2).step()
    for key, parameter in model.named_parameters():
        assert not torch.equal(parameter, before[key]), key


def test_early_fusion_sees_raw_inputs_and_decision_fusion_outputs_logits():
    early = build_model(SHAPES, 3, fusion="early", hidden_dim=8)
    assert early.fusion.input_dims == {"audio": 60, "image": 64, "meta": 7}
    decision = build_model(SHAPES, 3, fusion="late", hidden_dim=8, fusion_options={"mode": "decision"})
    assert decision.fusion.output_dim == 3 and isinstance(decision.head, torch.nn.Identity)


def test_standardize_statistics_per_kind_of_input():
    rng = np.random.default_rng(0)
    sequences = rng.normal(loc=[1, 5], scale=[2, 3], size=(50, 7, 2))
    layer = Standardize((7, 2)).fit(sequences)
    out = layer(torch.from_numpy(sequences)).numpy()
    np.testing.assert_allclose(out.reshape(-1, 2).mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(out.reshape(-1, 2).std(0), 1, atol=1e-6)
    images = np.zeros((10, 1, 4, 4))
    images[:, :, 1:3, 1:3] = rng.uniform(size=(10, 1, 2, 2))
    layer = Standardize((1, 4, 4)).fit(images)
    assert layer.mean.shape == (1, 1, 1) and np.isfinite(layer(torch.from_numpy(images)).numpy()).all()
