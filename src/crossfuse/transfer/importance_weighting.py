from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from crossfuse.evaluation.density_ratio import DensityRatio
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import TransferMethod


@TRANSFERS.register("iw")
class ImportanceWeighting(TransferMethod):
    """Instance transfer: weight each source sample's loss by ``w(x) = p_t(x) / p_s(x)``.

    ``L = sum_i w(x_i) CE(f(x_i), y_i) / sum_i w(x_i)`` over the source batch, with ``w`` estimated once,
    before training, by a logistic-regression domain classifier on the inputs
    (:class:`~crossfuse.evaluation.density_ratio.DensityRatio`: clipped, mean 1 on the source). This is
    covariate-shift correction (Shimodaira 2000; Sugiyama et al., JMLR 2007): it helps where the target's
    inputs fall in a region the source covers thinly.

    Parameters
    ----------
    max_weight
        Clip of the importance weights.
    flatten
        Exponent applied to the clipped weights (``w ** flatten``; 1 keeps them, 0 makes them uniform).
    """

    uses_target = False

    def __init__(self, max_weight: float = 10.0, flatten: float = 1.0) -> None:
        super().__init__()
        self.estimator = DensityRatio(max_weight=max_weight, flatten=flatten)
        self.row_weights: torch.Tensor | None = None

    def prepare(
        self, source: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray], seed: int = 0
    ) -> None:
        """Fit the density ratio on the training rows (``seed`` drives its randomised PCA) and weigh every
        source training row once, so that a step only looks its rows' weights up."""
        self.estimator.seed = seed
        self.estimator.fit(source, target)
        self.row_weights = torch.from_numpy(self.estimator.weights(source)).float()

    def source_weights(self, source: Mapping[str, torch.Tensor]) -> torch.Tensor:
        device = next(iter(source.values())).device
        rows, n = self.batch_source_rows, len(next(iter(source.values())))
        if self.row_weights is not None and rows is not None and len(rows) == n:
            if self.row_weights.device != rows.device:  # moved once, beside the rows
                self.row_weights = self.row_weights.to(rows.device)
            return self.row_weights[rows].to(device)
        arrays = {m: x.cpu().numpy() for m, x in source.items()}  # a batch not drawn by the trainer
        return torch.from_numpy(self.estimator.weights(arrays)).float().to(device)
