"""Per-modality input standardisation, fitted on training rows and stored in the model's buffers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Standardize(nn.Module):
    """``(x - mean) / std`` with statistics that depend on the kind of input.

    Vectors ``(d,)``: one mean/std per feature. Sequences ``(T, F)``: one per frame feature, pooled over
    time. Images ``(C, H, W)``: one per channel, pooled over pixels (so empty border pixels do not get a
    near-zero std). ``std`` is floored at ``1e-6`` times its largest value, so constant features stay
    finite.
    """

    def __init__(self, sample_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        stat_shape = self._stat_shape(self.sample_shape)
        self.register_buffer("mean", torch.zeros(stat_shape))
        self.register_buffer("std", torch.ones(stat_shape))

    @staticmethod
    def _stat_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) == 2:
            return (1, shape[1])
        if len(shape) == 3:
            return (shape[0], 1, 1)
        return shape

    @staticmethod
    def _pooled_axes(ndim: int) -> tuple[int, ...]:
        return {1: (0,), 2: (0, 1), 3: (0, 2, 3)}.get(ndim, (0,))

    def fit(self, x: np.ndarray) -> Standardize:
        axes = self._pooled_axes(x.ndim - 1)
        data = x.astype(np.float64)
        mean = data.mean(axis=axes, keepdims=True)[0]
        std = data.std(axis=axes, keepdims=True)[0]
        std = np.maximum(std, 1e-6 * max(float(std.max()), 1e-12))
        self.mean.copy_(torch.from_numpy(mean.reshape(self.mean.shape)))
        self.std.copy_(torch.from_numpy(std.reshape(self.std.shape)))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
