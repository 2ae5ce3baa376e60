"""The trainer's AdamW and cosine decay against torch.optim's, to the bit, and checkpoints across both."""

import math

import pytest
import torch

from crossfuse.train import optimizer as optimizer_module
from crossfuse.train.optimizer import AdamW, CosineDecay


class SmallModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)
        )
        self.unused = torch.nn.Linear(2, 2)  # never gets a gradient: both optimisers must skip it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return SmallModel()


def batches(n: int):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 1, 8, 8, generator=generator), torch.randint(0, 3, (8,), generator=generator))
            for _ in range(n)]  # fmt: skip


def train(model, optimizer, scheduler, data) -> list[float]:
    rates = []
    for x, y in data:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def torch_pair(model, total):
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=3e-3 / 20)


def our_pair(model, total):
    optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    return optimizer, CosineDecay(optimizer, total_steps=total, eta_min=3e-3 / 20)


def test_weights_and_rates_equal_torch_to_the_bit_over_a_whole_schedule_and_past_it():
    total, data = 12, batches(15)  # three steps past the end: torch's recursion has a branch there
    theirs, ours = small_model(), small_model()
    their_rates = train(theirs, *torch_pair(theirs, total), data)
    our_rates = train(ours, *our_pair(ours, total), data)
    assert our_rates == their_rates
    for (name, a), b in zip(theirs.state_dict().items(), ours.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(ours.unused.weight, small_model().unused.weight)


def test_the_rate_follows_the_cosine_and_every_parameter_moves():
    model = small_model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer, scheduler = our_pair(model, 10)
    rates = train(model, optimizer, scheduler, batches(10))
    for k, rate in enumerate(rates, 1):
        assert rate == pytest.approx(3e-3 / 20 + (3e-3 - 3e-3 / 20) * (1 + math.cos(math.pi * k / 10)) / 2)
    moved = [not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)]
    assert moved == [True, True, True, True, False, False]  # conv, linear; the unused layer stays


def test_one_adamw_step_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    p.grad = torch.tensor([0.5, 0.25])
    AdamW([p], lr=0.1, weight_decay=0.5).step()
    m, v = 0.1 * p.grad, 0.001 * p.grad**2
    decayed = torch.tensor([1.0, -2.0]) * (1 - 0.1 * 0.5)
    expected = decayed - 0.1 / (1 - 0.9) * m / (torch.sqrt(v) / math.sqrt(1 - 0.999) + 1e-8)
    assert torch.allclose(p.detach(), expected)


@pytest.mark.parametrize("first", ["torch", "ours"])
def test_a_state_saved_by_either_resumes_in_the_other_to_the_bit(first):
    total, data = 10, batches(10)
    straight = small_model()
    train(straight, *our_pair(straight, total), data)
    model = small_model()
    make_first, make_second = (torch_pair, our_pair) if first == "torch" else (our_pair, torch_pair)
    optimizer, scheduler = make_first(model, total)
    train(model, optimizer, scheduler, data[:4])
    saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()
    optimizer, scheduler = make_second(model, total)
    optimizer.load_state_dict(saved_optimizer)
    scheduler.load_state_dict(saved_scheduler)
    train(model, optimizer, scheduler, data[4:])
    for a, b in zip(straight.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_multi_tensor_update_a_gpu_takes_equals_the_loop():
    """``step_foreach`` (taken when the parameters are on a GPU) forced on the CPU: the same weights."""
    data = batches(6)
    looped, foreach = small_model(), small_model()
    train(looped, *our_pair(looped, 6), data)
    optimizer, scheduler = our_pair(foreach, 6)
    optimizer.step = lambda: optimizer.step_foreach([p for p in optimizer.params if p.grad is not None])
    train(foreach, optimizer, scheduler, data)
    for a, b in zip(looped.state_dict().values(), foreach.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-7)


class UsedModel(SmallModel):
    """Every parameter gets a gradient at every step: the case the flat update is for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + self.unused(torch.ones(x.shape[0], 2))[:, :1]


def used_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return UsedModel()


def test_the_flat_update_equals_the_loop_to_the_bit_and_falls_back_when_a_gradient_is_missing():
    total, data = 12, batches(14)
    looped, flat = used_model(), used_model()
    train(looped, *our_pair(looped, total), data)
    optimizer = AdamW(flat.parameters(), lr=3e-3, weight_decay=1e-2, flat=True)
    assert optimizer.flat is not None
    buffer = optimizer.flat.params
    assert all(p.data_ptr() >= buffer.data_ptr() and p.data_ptr() % 64 == 0 for p in flat.parameters())
    train(flat, optimizer, CosineDecay(optimizer, total_steps=total, eta_min=3e-3 / 20), data)
    assert optimizer.common_step == 14
    for (name, a), b in zip(looped.state_dict().items(), flat.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # a model with a parameter that gets no gradient: torch skips it, so the flat update cannot be used
    skipped = small_model()
    optimizer = AdamW(skipped.parameters(), lr=3e-3, weight_decay=1e-2, flat=True)
    reference = small_model()
    train(reference, *our_pair(reference, total), data)
    train(skipped, optimizer, CosineDecay(optimizer, total_steps=total, eta_min=3e-3 / 20), data)
    assert optimizer.common_step is None
    for a, b in zip(reference.state_dict().values(), skipped.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(skipped.unused.weight, small_model().unused.weight)


def test_a_flat_state_resumes_in_a_loop_and_back_and_release_unshares_the_weights():
    total, data = 10, batches(10)
    straight = used_model()
    train(straight, *our_pair(straight, total), data)
    model = used_model()
    optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2, flat=True)
    scheduler = CosineDecay(optimizer, total_steps=total, eta_min=3e-3 / 20)
    train(model, optimizer, scheduler, data[:3])
    saved, saved_rate = optimizer.state_dict(), scheduler.state_dict()
    optimizer, scheduler = our_pair(model, total)  # per parameter
    optimizer.load_state_dict(saved)
    scheduler.load_state_dict(saved_rate)
    train(model, optimizer, scheduler, data[3:6])
    saved, saved_rate = optimizer.state_dict(), scheduler.state_dict()
    optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2, flat=True)  # flat again
    scheduler = CosineDecay(optimizer, total_steps=total, eta_min=3e-3 / 20)
    optimizer.load_state_dict(saved)
    scheduler.load_state_dict(saved_rate)
    assert optimizer.common_step == 6
    train(model, optimizer, scheduler, data[6:])
    for a, b in zip(straight.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(storages) == 1
    optimizer.release()
    assert len({p.untyped_storage().data_ptr() for p in model.parameters()}) == len(list(model.parameters()))
    assert optimizer.flat is None


def test_a_model_of_millions_of_weights_takes_the_fused_step_within_rounding_of_the_loop():
    """From ``FUSED_MIN_ELEMENTS`` weights the flat step is torch's fused kernel: every weight within
    rounding of the loop's over a whole schedule, every weight moved, a state that resumes in the loop."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(1100, 1000)  # 1.1 million weights, past the threshold
    assert sum(p.numel() for p in layer.parameters()) >= optimizer_module.FUSED_MIN_ELEMENTS
    looped, fused = (torch.nn.Linear(1100, 1000) for _ in range(2))
    for model in (looped, fused):
        model.load_state_dict(layer.state_dict())
    generator = torch.Generator().manual_seed(2)
    data = [(torch.randn(16, 1100, generator=generator), torch.randint(0, 1000, (16,), generator=generator))
            for _ in range(6)]  # fmt: skip
    train(looped, *our_pair(looped, 6), data)
    optimizer = AdamW(fused.parameters(), lr=3e-3, weight_decay=1e-2, flat=True)
    calls = []
    kernel = optimizer.step_fused
    optimizer.step_fused = lambda: calls.append(1) or kernel()
    train(fused, optimizer, CosineDecay(optimizer, total_steps=6, eta_min=3e-3 / 20), data)
    assert len(calls) == 6
    for (name, a), b in zip(looped.state_dict().items(), fused.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name
        assert not torch.equal(b, layer.state_dict()[name]), name
    for q in fused.parameters():
        assert int(optimizer.state[q]["step"]) == 6
        assert (optimizer.state[q]["exp_avg_sq"] > 0).any()
    saved = optimizer.state_dict()
    loop_again, _ = our_pair(fused, 6)
    loop_again.load_state_dict(saved)
    assert loop_again.common_step == 6


def test_the_fused_step_by_hand(monkeypatch):
    """Two fused steps of a two-weight parameter against the AdamW formula written out."""
    monkeypatch.setattr(optimizer_module, "FUSED_MIN_ELEMENTS", 1)
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = AdamW([p], lr=0.1, weight_decay=0.5, flat=True)
    grads = [torch.tensor([0.5, 0.25]), torch.tensor([-0.3, 0.75])]
    called = []
    kernel = optimizer.step_fused
    optimizer.step_fused = lambda: called.append(1) or kernel()
    expected, m, v = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.0, 0.0
    for t, g in enumerate(grads, 1):
        p.grad = g.clone()
        optimizer.step()
        g = g.double()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        expected = expected * (1 - 0.1 * 0.5)
        expected = expected - 0.1 / (1 - 0.9**t) * m / (torch.sqrt(v / (1 - 0.999**t)) + 1e-8)
    assert called == [1, 1]
    assert torch.allclose(p.detach().double(), expected, rtol=1e-6)


@pytest.mark.parametrize("flat", [False, True])
def test_a_restart_steps_as_a_new_optimiser_over_the_same_weights_would(flat):
    """After :meth:`AdamW.restart` (V-REx's switch, DomainBed's new Adam), the next steps are a fresh
    optimiser's to the bit, at the learning rate the schedule had reached."""
    total, data = 12, batches(12)
    model = used_model()
    optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2, flat=flat)
    scheduler = CosineDecay(optimizer, total_steps=total, eta_min=3e-3 / 20)
    train(model, optimizer, scheduler, data[:5])
    reached = optimizer.lr
    fresh_model = used_model()
    fresh_model.load_state_dict(model.state_dict())
    fresh = AdamW(fresh_model.parameters(), lr=reached, weight_decay=1e-2, flat=flat)
    optimizer.restart()
    assert optimizer.common_step == 0
    for x, y in data[5:8]:
        for m, o in ((model, optimizer), (fresh_model, fresh)):
            loss = torch.nn.functional.cross_entropy(m(x), y)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert optimizer.common_step == 3
    assert all(s["step"].item() == 3 for s in optimizer.state.values())
