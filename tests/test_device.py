"""On a GPU: fusion modules, the model and a short training run keep everything on the device.

Skipped where CUDA is not available (CI has no GPU); run on a lent GPU machine.
"""

import numpy as np
import pytest
import torch

from crossfuse.fusion import FUSIONS, LowRankFusion, NuclearNormFusion
from crossfuse.model import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("name", list(FUSIONS))
def test_fusion_on_gpu_every_parameter_there_and_trained(name):
    torch.manual_seed(0)
    dims = {"a": 5, "b": 3, "c": 4}
    module = FUSIONS[name](dims, 6).cuda()
    x = {m: torch.randn(8, d, device="cuda") for m, d in dims.items()}
    loss = module(x).pow(2).mean() + (module.penalty() if hasattr(module, "penalty") else 0)
    loss.backward()
    for key, parameter in module.named_parameters():
        assert parameter.device.type == "cuda", key
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, key


def test_low_rank_fusion_equals_its_tfn_expansion_on_gpu():
    dims = {"a": 4, "b": 3, "c": 5}
    lmf = LowRankFusion(dims, 7, rank=5).double().cuda()
    x = {m: torch.randn(9, d, dtype=torch.float64, device="cuda") for m, d in dims.items()}
    tfn = lmf.to_tensor_fusion()
    assert tfn.linear.weight.device.type == "cuda"
    assert torch.allclose(tfn(x), lmf(x), atol=1e-8, rtol=0)


def test_nuclear_penalty_on_gpu_matches_singular_values():
    layer = NuclearNormFusion({"a": 6, "b": 4}, 5, penalty_weight=0.5).double().cuda()
    expected = sum(torch.linalg.svdvals(m.weight.cpu()).sum() for m in layer.maps)
    assert torch.allclose(layer.penalty().cpu(), 0.5 * expected)


def test_short_run_trains_on_gpu(toy_folder):
    from crossfuse.config import load_config
    from crossfuse.runner import run_experiment

    for transfer in ("source-only", "dann", "mixup", "iw", "coral", "mmd", "finetune"):
        config = load_config(
            None,
            dict(
                data=str(toy_folder), source=["a"], target=["b"], transfer=transfer, epochs=2, device="cuda"
            ),
        )
        metrics = run_experiment(config, None, log=str)
        assert metrics["device"].startswith("cuda") and np.isfinite(metrics["target_accuracy"]), transfer


def test_model_on_gpu_cpu_agree():
    torch.manual_seed(0)
    shapes = {"audio": (10, 4), "image": (1, 8, 8)}
    model = build_model(shapes, 3, fusion="lmf", hidden_dim=8).eval()
    x = {m: torch.randn(4, *s) for m, s in shapes.items()}
    on_cpu = model(x)
    on_gpu = model.cuda()({m: v.cuda() for m, v in x.items()})
    assert torch.allclose(on_cpu, on_gpu.cpu(), atol=1e-4)


def test_max_pooling_and_adamw_on_gpu_equal_torchs():
    import torch.nn.functional as F

    from crossfuse.encoders.max_pool import max_pool_2x2
    from crossfuse.train.optimizer import AdamW

    x = (torch.round(torch.randn(8, 4, 9, 10) * 2) / 2).cuda()
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    pooled, expected = max_pool_2x2(ours), F.max_pool2d(theirs, 2, ceil_mode=True)
    assert torch.equal(pooled, expected)
    upstream = torch.randn_like(expected)
    pooled.backward(upstream)
    expected.backward(upstream)
    assert torch.equal(ours.grad, theirs.grad)
    torch.manual_seed(0)
    first = torch.nn.Linear(5, 3).cuda()
    second = torch.nn.Linear(5, 3).cuda()
    second.load_state_dict(first.state_dict())
    mine, reference = AdamW(first.parameters(), lr=1e-2), torch.optim.AdamW(second.parameters(), lr=1e-2)
    data = torch.randn(16, 5, device="cuda")
    for _ in range(5):
        for model, optimizer in ((first, mine), (second, reference)):
            optimizer.zero_grad()
            model(data).square().mean().backward()
            optimizer.step()
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
