"""The gradient-reversal layer and the DANN warm-up schedule (Ganin et al., JMLR 2016)."""

from __future__ import annotations

import math

import torch


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coefficient * grad, None


def reverse_gradient(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-coefficient`` backward."""
    return _ReverseGradient.apply(x, coefficient)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """``lambda_p = 2 / (1 + exp(-gamma p)) - 1``: 0 at the start, rising to ~1 as ``p`` goes to 1."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0
