from __future__ import annotations

import torch
from torch import nn

from crossfuse.parallel.dropout import ShardDropout


class SequenceEncoder(nn.Module):
    """Temporal CNN for ``(batch, T, F)`` frame sequences (e.g. MFCC frames).

    Two 1-D convolutions over time (kernel 5, ``F -> c -> c`` channels, ReLU), then the mean and the max
    over time concatenated and projected to ``output_dim``: ``ReLU(W [mean_t h; max_t h] + b)``. Pooling
    over time makes it indifferent to where in the clip the word falls.
    """

    def __init__(self, n_features: int, output_dim: int = 64, channels: int = 32, dropout: float = 0.1):
        super().__init__()
        self.output_dim = output_dim
        self.conv = nn.Sequential(
            nn.Conv1d(n_features, channels, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=5, padding=2),
            nn.ReLU(),
        )
        self.project = nn.Sequential(ShardDropout(dropout), nn.Linear(2 * channels, output_dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.transpose(1, 2))
        return self.project(torch.cat([h.mean(-1), h.amax(-1)], dim=-1))
