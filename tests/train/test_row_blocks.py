"""forward_blocks: a training pass in parts gives what one pass gives (the same dropout masks, the
generator left in the same state, the outputs and gradients up to the order of float sums), and the rows
that need no gradient leave no autograd graph."""

import pytest
import torch
from torch import nn

from crossfuse.model import build_model
from crossfuse.parallel import DrawTape, batch_part, draw_for_shard, forward_blocks, rows_independent


def blocks(sizes=(5, 7, 5), seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randn(n, 1, 6, 6, generator=generator),
            "seq": torch.randn(n, 9, 4, generator=generator),
            "vec": torch.randn(n, 6, generator=generator),
        }
        for n in sizes
    ]


def training_model(fusion: str, modality_dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(
        {"image": (1, 6, 6), "seq": (9, 4), "vec": (6,)},
        4,
        fusion,
        hidden_dim=8,
        dropout=0.3,
        modality_dropout=modality_dropout,
    )
    return model.train()


def loss_of(outputs: list[torch.Tensor]) -> torch.Tensor:
    """A loss that reads the second block only as pseudo-labels, as domain mixup does."""
    first, second, third = outputs
    pseudo = second.detach().argmax(1)
    return nn.functional.cross_entropy(first, pseudo[: len(first)] % 4) + third.logsumexp(1).mean()


def one_pass(model, parts):
    outputs = model({m: torch.cat([p[m] for p in parts]) for m in parts[0]})
    return list(torch.split(outputs, [len(p["vec"]) for p in parts]))


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float32 sums in another order (a different mask would differ by far more)."""
    a, b = a.detach(), b.detach()
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(a.abs().max()))


@pytest.mark.parametrize("fusion", ["early", "late", "hierarchical", "tfn", "lmf", "nuclear"])
@pytest.mark.parametrize("modality_dropout", [0.0, 0.4])
@pytest.mark.parametrize("sizes", [(5, 7, 5), (16, 16, 16)])
def test_parts_give_one_pass(fusion, modality_dropout, sizes):
    parts = blocks(sizes)
    results = []
    for forward in (one_pass, lambda m, p: forward_blocks(m, p, no_grad=[False, True, False])):
        model = training_model(fusion, modality_dropout)
        assert rows_independent(model)  # the built-in model is forwarded in parts
        torch.manual_seed(5)
        outputs = forward(model, parts)
        loss_of(outputs).backward()
        grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
        results.append((outputs, grads, torch.rand(3)))  # the generator after the pass
    (outputs_a, grads_a, after_a), (outputs_b, grads_b, after_b) = results
    assert all(same(a, b) for a, b in zip(outputs_a, outputs_b, strict=True))
    assert grads_a.keys() == grads_b.keys() and grads_a
    assert all(same(grads_a[k], grads_b[k]) for k in grads_a)
    assert torch.equal(after_a, after_b)
    assert outputs_b[1].grad_fn is None and outputs_b[0].grad_fn is not None


def test_fresh_masks_would_fail_the_comparison():
    """Without the shared draws a part would get masks of its own: far from what :func:`same` allows."""
    model = training_model("late")
    parts = blocks()
    torch.manual_seed(5)
    whole = one_pass(model, parts)[2]
    torch.manual_seed(5)
    assert not same(whole, model(parts[2]))


class Batchwise(nn.Module):
    """A layer from outside the library (it could do anything with the batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 4)

    def forward(self, inputs):
        x = inputs["vec"]
        return self.linear(x - x.mean(0))


def test_a_model_that_may_mix_rows_is_forwarded_in_one_pass():
    model = Batchwise()
    assert not rows_independent(model)
    assert not rows_independent(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
    assert not rows_independent(nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)))  # its own masks
    assert rows_independent(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))
    assert rows_independent(training_model("lmf"))
    parts = [{"vec": b["vec"]} for b in blocks()]
    outputs = forward_blocks(model, parts, no_grad=[False, True, False])
    expected = one_pass(model, parts)
    assert all(torch.equal(a, b) for a, b in zip(outputs, expected, strict=True))
    assert outputs[1].grad_fn is None and outputs[0].grad_fn is not None


def test_parts_keep_their_rows_of_the_whole_draw():
    tape = DrawTape()
    with batch_part(torch.tensor([1, 3]), 4, tape):
        first = draw_for_shard(lambda n: torch.arange(n) * 10, 2)
    tape.rewind()
    with batch_part(torch.tensor([0, 2]), 4, tape):
        second = draw_for_shard(lambda n: torch.full((n,), -1), 2)  # replayed, not drawn
        with pytest.raises(RuntimeError, match="drew more"):
            draw_for_shard(lambda n: torch.zeros(n), 2)
    assert first.tolist() == [10, 30] and second.tolist() == [0, 20]
    with batch_part(torch.tensor([0, 2]), 4, DrawTape()), pytest.raises(RuntimeError, match="part of 2 rows"):
        draw_for_shard(lambda n: torch.zeros(n), 3)


def test_mixup_trains_what_its_one_pass_trained(monkeypatch):
    """Domain mixup's step through forward_blocks: the loss and gradients of its one pass over
    [source; target; mixed] (forced by declaring the model not row-wise)."""
    from crossfuse.parallel import row_blocks
    from crossfuse.transfer import TRANSFERS

    source, target, _ = blocks((6, 6, 1))
    labels = torch.arange(6) % 4
    results = []
    for split in (False, True):
        if not split:
            monkeypatch.setattr(row_blocks, "rows_independent", lambda model: False)
        else:
            monkeypatch.undo()
        model = training_model("late", modality_dropout=0.3)
        torch.manual_seed(3)
        loss = TRANSFERS["mixup"]().training_loss(model, source, labels, target, progress=0.7)
        loss.backward()
        results.append((loss, {k: p.grad for k, p in model.named_parameters()}, torch.rand(2)))
    (loss_a, grads_a, after_a), (loss_b, grads_b, after_b) = results
    assert same(loss_a, loss_b) and torch.equal(after_a, after_b)
    assert all(same(grads_a[k], grads_b[k]) for k in grads_a)
