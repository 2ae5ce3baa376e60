"""Each fusion against its maths written out directly in the test."""

import itertools

import numpy as np
import pytest
import torch

from crossfuse.errors import ConfigError
from crossfuse.fusion import (
    EarlyFusion,
    HierarchicalFusion,
    LateFusion,
    LowRankFusion,
    NuclearNormFusion,
    TensorFusion,
)
from crossfuse.fusion.low_rank import ROW_BLOCK

DIMS = [{"a": 3}, {"b": 2, "a": 3}, {"c": 2, "a": 3, "b": 1}, {"d": 2, "b": 1, "a": 2, "c": 3}]


def features(dims, batch=5, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, d, generator=generator, dtype=dtype) for m, d in dims.items()}


@pytest.mark.parametrize("dims", DIMS)
def test_tensor_fusion_element_by_element(dims):
    x = features(dims)
    fused = TensorFusion(dims).double()(x)
    names = sorted(dims)
    augmented = [torch.cat([torch.ones(5, 1, dtype=torch.float64), x[m]], 1) for m in names]
    assert fused.shape == (5, int(np.prod([dims[m] + 1 for m in names])))
    for b in range(5):
        for flat, index in enumerate(itertools.product(*[range(dims[m] + 1) for m in names])):
            expected = 1.0
            for vector, i in zip(augmented, index, strict=True):
                expected *= vector[b, i].item()
            assert fused[b, flat].item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_tensor_fusion_keeps_unimodal_terms_and_applies_linear():
    dims = {"a": 2, "b": 3}
    x = features(dims)
    layer = TensorFusion(dims, output_dim=4).double()
    z = layer.fused_tensor(x)
    assert torch.equal(z[:, 0], torch.ones(5, dtype=torch.float64))
    assert torch.allclose(z[:, 1:4], x["b"])  # [1, z_a] (x) [1, z_b]: row 0 is 1 * [1, z_b]
    assert torch.allclose(layer(x), z @ layer.linear.weight.T + layer.linear.bias)


def test_tensor_fusion_refuses_what_will_not_fit():
    with pytest.raises(
        ConfigError, match=r"\(32 \+ 1\) x \(32 \+ 1\) x \(128 \+ 1\) = 140481.*LowRankFusion"
    ):
        TensorFusion({"a": 32, "b": 32, "c": 128}, output_dim=4096)


@pytest.mark.parametrize("dims", DIMS)
def test_low_rank_fusion_equals_formula_and_its_tfn_expansion(dims):
    torch.manual_seed(1)
    x = features(dims)
    lmf = LowRankFusion(dims, output_dim=4, rank=3).double()
    names = sorted(dims)
    expected = torch.zeros(5, 4, dtype=torch.float64)
    for i in range(3):
        term = torch.ones(5, 4, dtype=torch.float64)
        for m, factor in zip(names, lmf.factors, strict=True):
            augmented = torch.cat([torch.ones(5, 1, dtype=torch.float64), x[m]], 1)
            term = term * (augmented @ factor[:, i, :])
        expected += lmf.rank_weights[i] * term
    expected += lmf.bias
    assert torch.allclose(lmf(x), expected, atol=1e-12)
    tfn = lmf.to_tensor_fusion()
    assert isinstance(tfn, TensorFusion)
    assert torch.allclose(tfn(x), lmf(x), atol=1e-8, rtol=0)


def plain_low_rank(lmf, x):
    """LowRankFusion's forward as autograd would differentiate it, op for op, without the hand backward."""
    product = None
    for m, (name, factor) in enumerate(zip(sorted(x), lmf.factors, strict=True)):
        if m == 0:
            factor = factor * lmf.rank_weights[None, :, None]
        flat = factor.reshape(factor.shape[0], -1)
        projected = torch.addmm(flat[0], x[name], flat[1:])
        product = projected if product is None else product * projected
    return product.view(-1, lmf.rank, lmf.output_dim).sum(1) + lmf.bias


@pytest.mark.parametrize("batch", [9, 2 * ROW_BLOCK + 3])
@pytest.mark.parametrize("dims", DIMS)
def test_low_rank_fusion_hand_backward_equals_autograd_to_the_bit(dims, batch):
    """Also across several row blocks: the blocked last product and its sum over ranks keep every bit."""
    torch.manual_seed(2)
    lmf = LowRankFusion(dims, output_dim=6, rank=4)
    x = {m: v.requires_grad_() for m, v in features(dims, batch=batch, dtype=torch.float32).items()}
    upstream = torch.randn(batch, 6)
    gradients = []
    for forward in (lmf, lambda inputs: plain_low_rank(lmf, inputs)):
        lmf.zero_grad(set_to_none=True)
        for v in x.values():
            v.grad = None
        output = forward(x)
        (output * upstream).sum().backward()
        gradients.append((output, [p.grad for p in lmf.parameters()], [x[m].grad for m in sorted(x)]))
    (ours, ours_params, ours_inputs), (plain, plain_params, plain_inputs) = gradients
    assert torch.equal(ours, plain)
    assert all(torch.equal(a, b) for a, b in zip(ours_params, plain_params, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(ours_inputs, plain_inputs, strict=True))
    double = LowRankFusion(dims, output_dim=3, rank=2).double()
    named = features(dims, batch=4)
    names, inputs = list(named), tuple(v.requires_grad_() for v in named.values())
    assert torch.autograd.gradcheck(lambda *tensors: double(dict(zip(names, tensors, strict=True))), inputs)


def test_nuclear_norm_fusion_output_and_penalty():
    dims = {"b": 4, "a": 3}
    x = features(dims)
    layer = NuclearNormFusion(dims, output_dim=5, penalty_weight=0.3).double()
    expected = x["a"] @ layer.maps[0].weight.T + x["b"] @ layer.maps[1].weight.T + layer.bias
    assert torch.allclose(layer(x), expected)
    nuclear = sum(torch.linalg.matrix_norm(m.weight, "nuc") for m in layer.maps)
    singular = sum(torch.linalg.svdvals(m.weight).sum() for m in layer.maps)
    assert torch.allclose(layer.penalty(), 0.3 * nuclear)
    assert torch.allclose(layer.penalty(), 0.3 * singular)


def test_early_fusion_is_concat_then_mlp():
    dims = {"b": 2, "a": 3}
    x = features(dims)
    layer = EarlyFusion(dims, output_dim=4).double().eval()
    joined = torch.cat([x["a"], x["b"]], 1)
    first, last = layer.net[0], layer.net[3]
    expected = torch.relu(joined @ first.weight.T + first.bias) @ last.weight.T + last.bias
    assert torch.allclose(layer(x), expected)
    assert torch.equal(EarlyFusion(dims)(x), joined)


def test_late_fusion_feature_and_decision_modes():
    dims = {"b": 2, "a": 3}
    x = features(dims)
    feature = LateFusion(dims, 4).double()
    assert torch.allclose(
        feature(x), torch.cat([x["a"], x["b"]], 1) @ feature.joint.weight.T + feature.joint.bias
    )
    decision = LateFusion(dims, 4, mode="decision").double()
    with torch.no_grad():
        decision.weight_logits.copy_(torch.tensor([0.2, -0.4]))
    w = torch.softmax(torch.tensor([0.2, -0.4], dtype=torch.float64), 0)
    heads = decision.heads
    expected = w[0] * heads[0](x["a"]) + w[1] * heads[1](x["b"])
    assert torch.allclose(decision(x), expected)
    fixed = LateFusion(dims, 4, mode="decision", weights=[3.0, 1.0]).double()
    expected = 0.75 * fixed.heads[0](x["a"]) + 0.25 * fixed.heads[1](x["b"])
    assert torch.allclose(fixed(x), expected)


def test_hierarchical_fusion_levels():
    dims = {"c": 2, "a": 3, "b": 1}
    x = features(dims)
    layer = HierarchicalFusion(dims, 4, hidden_dim=5).double()
    u = [torch.relu(lin[0](x[m])) for lin, m in zip(layer.unimodal, ["a", "b", "c"], strict=True)]
    pairs = [(0, 1), (0, 2), (1, 2)]
    p = [torch.relu(layer.pairwise[k][0](torch.cat([u[i], u[j]], 1))) for k, (i, j) in enumerate(pairs)]
    assert torch.allclose(layer(x), layer.joint(torch.cat(u + p, 1)))
    assert len(HierarchicalFusion({"a": 3}, 4).pairwise) == 0
