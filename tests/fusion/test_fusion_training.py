"""Properties every fusion module shares: order independence, gradients, devices, bad input."""

import pytest
import torch

from crossfuse.errors import ConfigError
from crossfuse.fusion import FUSIONS

OPTIONS = {"lmf": {"rank": 4}, "late": {}}
CASES = [
    (name, options)
    for name in FUSIONS
    for options in ([{}] if name != "late" else [{}, {"mode": "decision"}])
]
DIMS = [{"a": 3}, {"b": 2, "a": 3}, {"c": 2, "a": 3, "b": 4}, {"d": 2, "b": 3, "a": 2, "c": 3}]


def build(name, dims, options, output_dim=4):
    torch.manual_seed(0)
    return FUSIONS[name](dims, output_dim, **{**OPTIONS.get(name, {}), **options})


@pytest.mark.parametrize("dims", DIMS, ids=lambda d: f"{len(d)}mod")
@pytest.mark.parametrize(("name", "options"), CASES, ids=lambda x: str(x))
def test_every_parameter_gets_a_gradient_and_changes(name, options, dims):
    module = build(name, dims, options)
    x = {m: torch.randn(8, d) for m, d in dims.items()}
    before = {k: p.detach().clone() for k, p in module.named_parameters()}
    assert before, "a fusion module without parameters cannot learn"
    loss = module(x).pow(2).mean() + (module.penalty() if hasattr(module, "penalty") else 0)
    loss.backward()
    for key, parameter in module.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, key
    torch.optim.SGD(module.parameters(), lr=0.1).step()
    for key, parameter in module.named_parameters():
        assert not torch.equal(parameter, before[key]), key


@pytest.mark.parametrize(("name", "options"), CASES, ids=lambda x: str(x))
def test_result_does_not_depend_on_dict_order(name, options):
    dims = {"c": 2, "a": 3, "b": 4}
    module = build(name, dims, options).eval()
    reordered = build(name, dict(reversed(list(dims.items()))), options).eval()
    x = {m: torch.randn(6, d) for m, d in dims.items()}
    shuffled = {m: x[m] for m in ["b", "c", "a"]}
    assert torch.equal(module(x), module(shuffled))
    assert torch.equal(module(x), reordered(shuffled))


@pytest.mark.parametrize(("name", "options"), CASES, ids=lambda x: str(x))
def test_moves_with_the_module_dtype(name, options):
    module = build(name, {"a": 3, "b": 2}, options).double()
    out = module({"a": torch.randn(2, 3, dtype=torch.float64), "b": torch.randn(2, 2, dtype=torch.float64)})
    assert out.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in module.parameters())


@pytest.mark.parametrize("name", list(FUSIONS))
def test_wrong_feature_shapes_are_refused(name):
    module = build(name, {"a": 3, "b": 2}, {})
    with pytest.raises(ConfigError, match="modality 'b'"):
        module({"a": torch.randn(2, 3), "b": torch.randn(2, 5)})
    with pytest.raises(ConfigError, match="lacks modalities"):
        module({"a": torch.randn(2, 3)})
