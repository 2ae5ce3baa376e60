"""Per-domain standardisation (``--normalization domain``): each source domain's rows mapped onto the
target's moments before training.

With ``mean_d, scale_d`` the statistics of source domain ``d`` (its training rows) and ``mean_T,
scale_T`` those of the unlabelled target rows, each of the kind :class:`~crossfuse.normalize.Standardize`
picks for the target's values (per feature, or one scale a modality),

``x' = (x - mean_d) / scale_d * scale_T + mean_T``

for every row of domain ``d``. The model's own standardisation keeps the target's statistics, so a source
row reaches the encoders as ``(x - mean_d) / scale_d`` and a target row, at training and at ``predict``
alike, as ``(x - mean_T) / scale_T``: each domain standardised by its own moments, while the model stays a
plain model of the target's inputs (exported and predicted without knowing any domain). This removes a
shift that changes each feature by a gain and an offset (another instrument's calibration, another
speaker's voice: per-speaker cepstral mean and variance normalisation, Viikki & Laurila, Speech
Communication 1998), and it is wrong when the classes' shares differ between the domains, whose moments
then move because the classes did.
"""

from __future__ import annotations

import numpy as np

from crossfuse.data.dataset import MultimodalDataset, Task, TaskSplit
from crossfuse.data.missing import present_rows
from crossfuse.errors import ConfigError
from crossfuse.normalize import Standardize


def statistics(rows: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of ``rows`` (``(N, *sample_shape)``, samples that lack the modality left out) as
    :class:`~crossfuse.normalize.Standardize` of ``kind`` computes them, shaped to broadcast over rows."""
    fitted = Standardize(rows.shape[1:], kind).fit(present_rows(rows))
    return fitted.mean.double().numpy(), fitted.std.double().numpy()


def match_source_moments(dataset: MultimodalDataset, task: Task, split: TaskSplit) -> None:
    """Map every row of each source domain of ``task`` onto the moments of the unlabelled target rows
    (``split.target_train``, pooled over the target domains), modality by modality, in ``dataset``
    (replaced arrays; a NaN stays NaN). The statistics of a source domain are those of its training rows
    (``split.source_train``); its validation rows are mapped with them."""
    if len(split.target_train) == 0:
        raise ConfigError(
            "normalization 'domain' standardises each domain by its own rows, and this run trains "
            "without target rows: use auto, feature or global"
        )
    for name, array in dataset.modalities.items():
        target = present_rows(array[split.target_train])
        if len(target) == 0:
            raise ConfigError(
                f"normalization 'domain' standardises modality {name!r} by the target's own rows, and no "
                "unlabelled target row has it (use auto, feature or global)"
            )
        reference = Standardize(array.shape[1:], "domain").fit(target)  # what the model will keep
        kind = reference.kind
        target_mean, target_scale = reference.mean.double().numpy(), reference.std.double().numpy()
        mapped = array.astype(np.result_type(array.dtype, np.float32))  # a copy, of a float type
        for domain in task.source:
            own = split.source_train[dataset.domains[split.source_train] == domain]
            if len(present_rows(array[own])) == 0:
                continue  # no row of this domain has the modality: nothing to map
            mean, scale = statistics(array[own], kind)
            rows = np.flatnonzero(dataset.domains == domain)
            moved = (array[rows].astype(np.float64) - mean) / scale * target_scale + target_mean
            mapped[rows] = moved.astype(mapped.dtype)
        dataset.modalities[name] = mapped
