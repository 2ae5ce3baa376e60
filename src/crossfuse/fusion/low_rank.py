from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.fusion._common import FusionModule, ordered_features, sorted_dims
from crossfuse.fusion.tensor import TensorFusion
from crossfuse.registry import FUSIONS


@FUSIONS.register("lmf")
class LowRankFusion(FusionModule):
    """Low-rank Multimodal Fusion (Liu et al., "Efficient Low-rank Multimodal Fusion with
    Modality-Specific Factors", ACL 2018).

    The TFN weight ``W`` (shape ``prod_m (d_m + 1) x d_y``) is replaced by a rank-``r`` decomposition with
    modality-specific factors ``W_m^(i)`` of shape ``(d_m + 1, d_y)``:

    ``y = sum_{i=1}^r w_i prod_m ([1; z_m]^T W_m^(i)) + b``  (products elementwise over ``d_y``),

    with learned rank weights ``w`` and bias ``b``. This equals ``TensorFusion`` with the expanded weight
    ``W = sum_i w_i W_1^(i) ⊗ ... ⊗ W_M^(i)`` (see :meth:`to_tensor_fusion`), at a cost linear in M.

    Every factor is a registered parameter (two reference implementations keep them in plain lists, so
    they never train). Factor ``m`` is stored as ``(d_m + 1, r, d_y)`` so that one ``addmm`` per modality
    gives all ranks at once; the rank weights are folded into the first modality's factor.

    Parameters
    ----------
    input_dims
        Feature size ``d_m`` of each modality.
    output_dim
        ``d_y``.
    rank
        ``r``.
    """

    def __init__(self, input_dims: Mapping[str, int], output_dim: int | None, rank: int = 8) -> None:
        super().__init__()
        self.input_dims = sorted_dims(input_dims)
        if output_dim is None or rank < 1:
            raise ConfigError(
                f"LowRankFusion needs an integer output_dim and rank >= 1 (got {output_dim}, {rank})"
            )
        self.output_dim, self.rank = output_dim, rank
        self.factors = nn.ParameterList()
        for size in self.input_dims.values():
            factor = torch.empty(size + 1, rank, output_dim)
            # Xavier-normal per rank slice, as the LMF authors initialise (d_m + 1) x d_y factors.
            nn.init.normal_(factor, std=(2.0 / (size + 1 + output_dim)) ** 0.5)
            self.factors.append(nn.Parameter(factor))
        self.rank_weights = nn.Parameter(torch.empty(rank))
        nn.init.normal_(self.rank_weights, std=(2.0 / (1 + rank)) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(output_dim))

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ordered = ordered_features(features, self.input_dims)
        flats = [
            (factor * self.rank_weights[None, :, None] if m == 0 else factor).reshape(factor.shape[0], -1)
            for m, factor in enumerate(self.factors)
        ]
        return _RankProducts.apply(self.rank, len(ordered), *ordered, *flats) + self.bias

    @torch.no_grad()
    def expanded_weight(self) -> torch.Tensor:
        """``W = sum_i w_i ⊗_m W_m^(i)``, shape ``(prod_m (d_m + 1), d_y)``, rows in TFN's order."""
        full = self.factors[0] * self.rank_weights[None, :, None]
        for factor in self.factors[1:]:
            full = (full[:, None] * factor[None]).flatten(0, 1)
        return full.sum(1)

    def to_tensor_fusion(self) -> TensorFusion:
        """The :class:`TensorFusion` (with ``output_dim``) whose output equals this module's."""
        tfn = TensorFusion(self.input_dims, self.output_dim, max_weight_elements=2**62)
        weight = self.expanded_weight()
        tfn = tfn.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            tfn.linear.weight.copy_(weight.T)
            tfn.linear.bias.copy_(self.bias)
        return tfn


# Rows a block in the forward's last product: 64 rows of r * d_y = 4096 floats are 1 MiB, so a block's
# product stays in cache until its sum over ranks reads it.
ROW_BLOCK = 64


class _RankProducts(torch.autograd.Function):
    """``sum_i prod_m (F_m[0] + z_m F_m[1:])`` over the ``r`` rank slices, forward and backward by hand.

    The arithmetic is autograd's on the plain formulation, op for op (the same products in the same
    layouts, the same reductions), so weights and gradients are equal to the bit; what it saves is
    autograd's bookkeeping around it: the copy that materialises the broadcast gradient of the sum over
    ranks, and the zero-filled buffers and additions that the gradients of ``F_m[0]`` and ``F_m[1:]``
    (a row and a slice of one parameter) go through. ``prefix[m]`` is ``prod_{k<=m} p_k``.

    Memory traffic, not arithmetic, is what the elementwise part costs, so it is laid out for the cache
    without changing a single rounding: the last product is never stored whole (each block of rows is
    summed over ranks while it is in cache; every output row's sum is the same whatever the block), and
    the backward finishes one modality's gradients (its two matrix products and its bias row) while that
    modality's product is fresh, multiplying the running upstream product in place.
    """

    @staticmethod
    def forward(ctx, rank: int, n_modalities: int, *tensors: torch.Tensor) -> torch.Tensor:
        inputs, flats = tensors[:n_modalities], tensors[n_modalities:]
        # [1; z]^T F = F[0] + z^T F[1:], for all ranks in one matmul: (batch, r * d_y).
        projected = [torch.addmm(flat[0], z, flat[1:]) for z, flat in zip(inputs, flats, strict=True)]
        prefix = [projected[0]]
        for p in projected[1:-1]:
            prefix.append(prefix[-1] * p)
        ctx.rank = rank
        ctx.save_for_backward(*inputs, *flats, *projected, *prefix[: n_modalities - 1])
        batch, last = projected[0].shape[0], projected[-1]
        if n_modalities == 1:
            return last.view(batch, rank, -1).sum(1)
        out = last.new_empty(batch, last.shape[1] // rank)
        for rows in _row_blocks(batch):
            block = prefix[-1][rows] * last[rows]
            torch.sum(block.view(block.shape[0], rank, -1), 1, out=out[rows])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        saved = ctx.saved_tensors
        n = (len(saved) + 1) // 4
        inputs, flats, projected = saved[:n], saved[n : 2 * n], saved[2 * n : 3 * n]
        prefix = saved[3 * n :]
        batch, ranks = grad.shape[0], (grad.shape[0], ctx.rank, -1)
        grad_inputs: list[torch.Tensor | None] = [None] * n
        grad_flats: list[torch.Tensor | None] = [None] * n

        def finish(m: int, g: torch.Tensor) -> None:
            flat = flats[m]
            if ctx.needs_input_grad[2 + m]:
                grad_inputs[m] = g.mm(flat[1:].t())
            if ctx.needs_input_grad[2 + n + m]:
                grad_flat = torch.empty_like(flat)
                torch.mm(inputs[m].t(), g, out=grad_flat[1:])
                torch.sum(g, 0, out=grad_flat[0])
                grad_flats[m] = grad_flat

        # d out / d prefix[-1] is the gradient broadcast over ranks; multiply by it without copying it.
        upstream = grad[:, None, :]
        for m in range(n - 1, 0, -1):
            finish(m, (upstream * prefix[m - 1].view(ranks)).view(batch, -1))
            if m == n - 1:
                upstream = upstream * projected[m].view(ranks)
            else:
                upstream.mul_(projected[m].view(ranks))
        finish(0, upstream.expand(ranks).reshape(batch, -1))
        return (None, None, *grad_inputs, *grad_flats)


def _row_blocks(batch: int) -> list[slice]:
    return [slice(start, start + ROW_BLOCK) for start in range(0, batch, ROW_BLOCK)]
