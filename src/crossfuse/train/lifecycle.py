"""The one place a transfer method is started on a model: the runner, the tests and the benchmarks
all go through :func:`start_method`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from crossfuse.model import MultimodalModel
from crossfuse.transfer.base import TransferMethod


@torch.no_grad()
def feature_dims(model: MultimodalModel, inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
    """``space -> size`` of each modality's encoding and of the fused representation (``'fused'``), found
    by running two rows of ``inputs`` through ``model``; what :meth:`TransferMethod.setup` takes."""
    was_training = model.training
    probe = model.encode({m: torch.from_numpy(np.ascontiguousarray(x[:2])) for m, x in inputs.items()})
    dims = {m: f.shape[1] for m, f in probe.items()} | {"fused": model.fuse(probe).shape[1]}
    model.train(was_training)
    return dims


def start_method(
    method: TransferMethod,
    model: MultimodalModel,
    source: Mapping[str, np.ndarray],
    target: Mapping[str, np.ndarray],
    seed: int,
    n_source_domains: int = 1,
    source_labels: np.ndarray | None = None,
) -> None:
    """Everything before the first training step, in order: the model's input normalisation is fitted
    on the source rows, the method learns how many source domains there are (and, for a classifier given
    ``source_labels``, the share of each class among them), builds its parameters on the model's feature
    sizes (:meth:`TransferMethod.setup`) and sees the training rows (:meth:`TransferMethod.prepare`).
    A per-domain normalisation (``'domain'``) is fitted on the target rows instead."""
    model.fit_normalizers(source, target)
    method.n_source_domains = n_source_domains
    if source_labels is not None and model.objective.kind == "classification":
        known = np.asarray(source_labels, dtype=np.int64)
        known = known[known >= 0]  # -1: a row without a label
        if len(known):
            counts = np.bincount(known, minlength=model.n_outputs)
            method.source_class_shares = torch.as_tensor(counts / counts.sum(), dtype=torch.float32)
    method.setup(model, feature_dims(model, source))
    method.prepare(source, target, seed)
