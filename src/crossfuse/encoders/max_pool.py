"""2x2 max-pooling, stride 2, rounding the output size up: ``nn.MaxPool2d(2, ceil_mode=True)``, faster.

On a CPU, torch's ``max_pool2d`` walks every window with a generic kernel (any size, stride, dilation,
padding) and was a fifth of an AV-Digits training step. For the one window the image encoder uses, the
maximum is three elementwise maxima of the four strided views of the input, and the index of the winning
element (the one torch's backward needs) a few comparisons. The result is the same to the bit, gradient
included: a maximum is exact, and ties go to the first element in torch's scan order (row by row).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_window_corners: dict[tuple[int, int, torch.device], torch.Tensor] = {}


def window_corners(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Flat index ``2i W + 2j`` of the top-left element of every window ``(i, j)`` of an ``H x W`` plane
    (cached: one tensor a plane size and device, so that a GPU step copies nothing to the device)."""
    key = (height, width, torch.device(device))
    if key not in _window_corners:
        rows = torch.arange(0, height, 2, device=device) * width
        _window_corners[key] = rows[:, None] + torch.arange(0, width, 2, device=device)[None, :]
    return _window_corners[key]


def window_views(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four elements of every 2x2 window as strided views (top left, top right, bottom left, bottom
    right); an odd side is padded with ``-inf``, which is never the maximum of a window."""
    height, width = x.shape[-2:]
    if height % 2 or width % 2:
        x = F.pad(x, (0, width % 2, 0, height % 2), value=float("-inf"))
    return x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        ctx.input_shape = x.shape
        top_left, top_right, bottom_left, bottom_right = window_views(x)
        top, bottom = torch.maximum(top_left, top_right), torch.maximum(bottom_left, bottom_right)
        # strict comparisons: on a tie the element earlier in the scan order wins, as in torch
        lower = bottom > top
        right_on_top = top_right > top_left
        # the winner's column: the bottom row's when the bottom wins, else the top row's (xor is a select)
        right = right_on_top ^ (lower & (right_on_top ^ (bottom_right > bottom_left)))
        corners = window_corners(height, width, x.device)
        ctx.save_for_backward(torch.add(corners, lower, alpha=width).add_(right))
        return torch.maximum(top, bottom)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (index,) = ctx.saved_tensors
        shape_only = grad.new_empty(ctx.input_shape)  # torch's backward reads the input's shape, not values
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), shape_only, [2, 2], [2, 2], [0, 0], [1, 1], True, index
        )


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``y[..., i, j] = max(x[..., 2i:2i+2, 2j:2j+2])`` for ``x`` of shape ``(..., H, W)``; the output is
    ``(..., ceil(H/2), ceil(W/2))``. Equal to ``F.max_pool2d(x, 2, ceil_mode=True)``, gradient included."""
    if x.dim() != 4:
        return F.max_pool2d(x, 2, ceil_mode=True)
    if torch.is_grad_enabled() and x.requires_grad:
        return _MaxPool2x2.apply(x)
    top_left, top_right, bottom_left, bottom_right = window_views(x)  # no gradient: no index
    return torch.maximum(torch.maximum(top_left, top_right), torch.maximum(bottom_left, bottom_right))


class MaxPool2x2(nn.Module):
    """:func:`max_pool_2x2` as a layer (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_2x2(x)
