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

The same holds for a batch that one process forwards in parts (:func:`batch_part`, used by
:func:`~crossfuse.parallel.forward_blocks`): each part gets its rows of the draws for the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.distributed as dist

_SHARD: ContextVar[tuple[int, int]] = ContextVar("crossfuse_batch_shard", default=(0, 1))


class DrawTape:
    """The random draws of one forward pass over a batch, recorded by its first part and replayed to the
    others in the same order (:func:`batch_part`)."""

    def __init__(self) -> None:
        self.draws: list[torch.Tensor] = []
        self.position: int | None = None

    def take(self, draw: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self.position is None:
            self.draws.append(draw())
            return self.draws[-1]
        if self.position >= len(self.draws):
            raise RuntimeError("a part of the batch drew more than the first part did")
        self.position += 1
        return self.draws[self.position - 1]

    def rewind(self) -> None:
        """Replay from the first draw (the next part of the batch)."""
        self.position = 0


_PART: ContextVar[tuple[torch.Tensor, int, DrawTape] | None] = ContextVar(
    "crossfuse_batch_part", default=None
)


@contextmanager
def batch_part(rows: torch.Tensor, total: int, tape: DrawTape) -> Iterator[None]:
    """Within the block the model forwards rows ``rows`` of a batch of ``total`` rows (this process's):
    a random draw per row is made for the whole batch and these rows kept, the draws recorded in ``tape``
    by the first part and replayed to the others (``tape.rewind()`` between parts). The parts then get
    the numbers that one pass over the batch draws, and the generator advances as that pass's does."""
    token = _PART.set((rows, total, tape))
    try:
        yield
    finally:
        _PART.reset(token)


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
    belong to this process, ``draw(w * local_rows)[rank::w]`` (and of those, within :func:`batch_part`,
    the part's rows)."""
    part = _PART.get()
    if part is None:
        return _draw_shard(draw, local_rows)
    rows, total, tape = part
    if local_rows != len(rows):
        raise RuntimeError(f"a part of {len(rows)} rows drew for {local_rows}")
    whole = tape.take(lambda: _draw_shard(draw, total))
    return whole[rows.to(whole.device)]


def _draw_shard(draw: Callable[[int], torch.Tensor], local_rows: int) -> torch.Tensor:
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
