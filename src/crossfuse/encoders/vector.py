from __future__ import annotations

import torch
from torch import nn

from crossfuse.parallel.dropout import ShardDropout


class VectorEncoder(nn.Module):
    """Two-layer MLP for ``(batch, d)`` inputs: ``ReLU(W_2 ReLU(W_1 x + b_1) + b_2)``.

    Parameters
    ----------
    input_dim, output_dim
        ``d`` and the size of the encoding.
    dropout
        Dropout rate after the first layer.
    """

    def __init__(self, input_dim: int, output_dim: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.output_dim = output_dim
        hidden = max(output_dim, min(256, 2 * input_dim))
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden),
            nn.ReLU(),
            ShardDropout(dropout),
            nn.Linear(hidden, output_dim),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
