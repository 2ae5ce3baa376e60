from __future__ import annotations

import torch
from torch import nn

from crossfuse.encoders.max_pool import MaxPool2x2
from crossfuse.parallel.dropout import ShardDropout


class AverageTo4x4(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d(4)``, skipped when the maps are already 4x4 (16x16 images): each window is
    then one element, and torch's generic kernel took a twentieth of a training step to copy it."""

    def __init__(self) -> None:
        super().__init__(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.shape[-2:] == (4, 4) else super().forward(x)


class ImageEncoder(nn.Module):
    """Small CNN for ``(batch, C, H, W)`` images.

    Two blocks of 3x3 convolution + ReLU + 2x2 max-pooling (``C -> 16 -> 32`` channels: enough for
    digit-sized images and cheap on a CPU), an adaptive average pool to 4x4 (so any image size works;
    pooling rounds up, so a side of 1 stays 1), then ``ReLU(W vec(h) + b)`` to ``output_dim``. Pooling
    comes before the ReLU, which is the same function (``max`` and ``ReLU`` commute, and so do their
    gradients) on a quarter of the elements.
    """

    def __init__(self, in_channels: int, output_dim: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=3, padding=1),
            MaxPool2x2(),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            MaxPool2x2(),
            nn.ReLU(),
            AverageTo4x4(),
        )
        self.project = nn.Sequential(
            nn.Flatten(), ShardDropout(dropout), nn.Linear(32 * 16, output_dim), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.conv(x))
