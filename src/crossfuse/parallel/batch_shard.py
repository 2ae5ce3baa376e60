"""Which rows of the global batch this process holds, and the operations that need the whole batch.

The training loop gives process ``r`` of ``w`` the rows ``r, r + w, r + 2w, ...`` of every global batch
(source, target). A method that joins equal-sized blocks of those shards (``[source; target]``,
``[source; target; mixed]``) keeps the property: local row ``i`` is global row ``w i + r`` of the joined
global batch, because ``w (k b + j) + r = k (w b) + (w j + r)`` for block ``k`` of local size ``b``.

Three things differ between one process and N unless they are made to agree:

- random draws per row (dropout masks, mixup's ``lambda``): :func:`draw_for_shard` draws for the whole
  global batch on every process (their generators are seeded alike and consume alike) and keeps this
  process's rows, so the numbers are those one process draws;
- statistics over the batch (covariances, kernel means): :func:`gather_shards` gives every process the
  global batch, differentiably;
- normalisers over the batch (the sum of importance weights): :func:`global_sum`.

Outside :func:`batch_shard` (evaluation, fine-tuning, a single process) the shard is ``(0, 1)`` and each
of them is the plain operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.distributed as dist

_SHARD: ContextVar[tuple[int, int]] = ContextVar("crossfuse_batch_shard", default=(0, 1))


@contextmanager
def batch_shard(rank: int, world_size: int) -> Iterator[None]:
    """Within the block, this process holds rows ``rank::world_size`` of each global batch."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    token = _SHARD.set((rank, world_size))
    try:
        yield
    finally:
        _SHARD.reset(token)


def current_shard() -> tuple[int, int]:
    """``(rank, world_size)`` of the batch shard in effect; ``(0, 1)`` when the batch is whole."""
    return _SHARD.get()


def draw_for_shard(draw: Callable[[int], torch.Tensor], local_rows: int) -> torch.Tensor:
    """``draw(n)`` returns ``n`` random rows; this returns the rows of a draw for the global batch that
    belong to this process, ``draw(w * local_rows)[rank::w]``."""
    rank, world = current_shard()
    if world == 1:
        return draw(local_rows)
    return draw(world * local_rows)[rank::world]


class _GatherRows(torch.autograd.Function):
    """All-gather of row shards into global row order; backward sums every process's gradient of the
    global batch and returns this process's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
        ctx.rank, ctx.world = rank, world
        shards = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(shards, x.contiguous())
        return torch.stack(shards, dim=1).reshape(world * x.shape[0], *x.shape[1:])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank :: ctx.world], None, None


def gather_shards(x: torch.Tensor) -> torch.Tensor:
    """The global batch ``(w n, ...)`` in its row order, from every process's ``(n, ...)`` shard.

    Every process then computes the same global loss ``L``. The backward pass sums the processes'
    gradients with respect to each shard, ``w dL/dx_r``, and DistributedDataParallel's average over the
    ``w`` processes turns that into exactly the one-process gradient ``dL/dtheta``.
    """
    rank, world = current_shard()
    if world == 1:
        return x
    return _GatherRows.apply(x, rank, world)


@torch.no_grad()
def global_sum(x: torch.Tensor) -> torch.Tensor:
    """``sum(x)`` over the global batch (no gradient: it is for normalising constants)."""
    total = x.sum()
    if current_shard()[1] > 1:
        dist.all_reduce(total)
    return total
