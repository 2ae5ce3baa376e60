from __future__ import annotations

import torch
from torch import nn

from crossfuse.parallel.batch_shard import draw_for_shard


class ShardDropout(nn.Dropout):
    """Dropout whose masks do not depend on how the batch is split across processes.

    ``y = x * m / (1 - p)``, ``m_ij ~ Bernoulli(1 - p)`` (Srivastava et al., JMLR 2014), with the mask drawn
    for the whole global batch and this process's rows kept (:func:`draw_for_shard`), so ``N`` processes
    under ``torchrun`` drop the units that one process would. With one process on a CPU the mask is drawn
    exactly as ``torch.nn.Dropout`` draws it (``bernoulli_(1 - p)`` on a tensor shaped like the input), so
    the two give identical numbers.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * 0
        keep = 1 - self.p

        def draw(rows: int) -> torch.Tensor:
            return x.new_empty((rows, *x.shape[1:])).bernoulli_(keep).div_(keep)

        return x * draw_for_shard(draw, x.shape[0])
