"""A training forward pass over blocks of rows, some of which need no gradient.

Domain mixup forwards ``[source; target; mixed]`` in one pass and uses the target rows' outputs only as
detached pseudo-labels, yet a backward pass through that batch spends a third of its work on rows whose
gradient is zero. :func:`forward_blocks` forwards those blocks without an autograd graph and the others
with one, so that the backward pass touches only the rows the loss differentiates.

Nothing else changes. Every random draw per row (dropout masks, modality dropout) is made for the whole
batch and each part keeps its rows (:func:`~crossfuse.parallel.batch_part`), so each row gets the mask
that one pass gives it and the generator ends where one pass leaves it. A row's output does not depend on
the other rows of a batch for the layers the library builds (no batch statistics), and the weight
gradients' sums over rows only lose terms that are exactly zero; the float sums may group their terms
differently, so the numbers are the same up to that rounding (to the bit at AV-Digits' batch of 64 rows,
where every printed number of ``make bench`` stays the same). A model with a layer not known to be
row-wise with shared draws (:func:`rows_independent`: batch normalisation, torch's own dropout, a user's
layer) is forwarded in one pass as before, as is every model on a GPU, where a pass is bound by kernel
launches rather than arithmetic, and every shard under ``torchrun`` (its agreement with one process was
measured on the one-pass arithmetic, and its shards are too small to gain much).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import accumulate

import torch
from torch import nn

from crossfuse.parallel.batch_shard import DrawTape, batch_part, current_shard

Inputs = Mapping[str, torch.Tensor]


#: torch layers whose output row depends on its input row alone and that draw no random numbers of
#: their own (torch's dropout would draw a mask a part, not the one pass's).
ROW_WISE_LAYERS = (
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AvgPool1d, nn.AvgPool2d, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ELU, nn.Embedding, nn.Flatten,
    nn.GELU, nn.GroupNorm, nn.Identity, nn.LayerNorm, nn.LeakyReLU, nn.Linear, nn.MaxPool1d,
    nn.MaxPool2d, nn.ModuleDict, nn.ModuleList, nn.ParameterDict, nn.ParameterList, nn.ReLU,
    nn.Sequential, nn.SiLU, nn.Sigmoid, nn.Tanh,
)  # fmt: skip


def rows_independent(model: nn.Module) -> bool:
    """Whether each row's output of ``model`` is known to depend on that row alone, and its random draws
    per row all to go through :func:`~crossfuse.parallel.draw_for_shard`: every layer is crossfuse's
    (all row-wise) or one of :data:`ROW_WISE_LAYERS`, exactly (not a subclass, which could do anything).
    Batch normalisation, torch's own dropout, attention (whose batch axis is a flag) and a user's layer are
    not."""
    return all(
        type(module) in ROW_WISE_LAYERS or type(module).__module__.startswith("crossfuse.")
        for module in model.modules()
    )


def forward_blocks(model: nn.Module, blocks: Sequence[Inputs], no_grad: Sequence[bool]) -> list[torch.Tensor]:
    """``model(cat(blocks))`` split back into one output per block, as one training pass computes it; the
    outputs of the blocks marked ``no_grad`` carry no autograd graph.

    Parameters
    ----------
    model
        Maps ``{modality: (rows, ...)}`` to ``(rows, ...)``.
    blocks
        Row blocks with the same modalities.
    no_grad
        One flag a block: its output is only read, never differentiated.
    """
    sizes = [len(next(iter(block.values()))) for block in blocks]
    modalities = list(blocks[0])
    device = next(iter(blocks[0].values())).device
    one_process_cpu = device.type == "cpu" and current_shard()[1] == 1
    if not any(no_grad) or all(no_grad) or not one_process_cpu or not rows_independent(model):
        outputs = model({m: torch.cat([block[m] for block in blocks]) for m in modalities})
        parts = list(torch.split(outputs, sizes))
        return [part.detach() if skip else part for part, skip in zip(parts, no_grad, strict=True)]
    starts = list(accumulate(sizes, initial=0))
    tape, outputs = DrawTape(), [torch.empty(0)] * len(blocks)
    for skip in (True, False):  # the first part records the draws, the second replays them
        chosen = [i for i, s in enumerate(no_grad) if s == skip]
        inputs = (
            blocks[chosen[0]]
            if len(chosen) == 1
            else {m: torch.cat([blocks[i][m] for i in chosen]) for m in modalities}
        )
        rows = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in chosen])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not skip), batch_part(rows, starts[-1], tape):
            parts = torch.split(model(inputs), [sizes[i] for i in chosen])
        tape.rewind()
        for i, part in zip(chosen, parts, strict=True):
            outputs[i] = part
    return outputs
