"""Per-domain standardisation (``--normalization domain``): each domain's rows mapped onto one reference
set of moments before training, so that the model's own standardisation, which keeps the reference's
statistics, standardises every domain by its own.

With ``mean_d, scale_d`` the statistics of domain ``d`` and ``mean_R, scale_R`` the reference's, each of
the kind :class:`~crossfuse.normalize.Standardize` picks for the reference's values (per feature, or one
scale a modality),

``x' = (x - mean_d) / scale_d * scale_R + mean_R``

for every row of domain ``d``, which reaches the encoders as ``(x - mean_d) / scale_d``. This removes a
shift that changes each feature by a gain and an offset (another instrument's calibration, another
speaker's voice: per-speaker cepstral mean and variance normalisation, Viikki & Laurila, Speech
Communication 1998), and it is wrong when the classes' shares differ between the domains, whose moments
then move because the classes did.

- Adaptation (unlabelled target rows to train on): the reference is the target's training rows, pooled
  over the target domains; a source domain's statistics are those of its training rows. With one target
  domain its rows are the reference and stay as they are, so the trained model standardises new target
  rows at ``predict`` and in an export without knowing any domain. With several, each is mapped by the
  statistics of its own training rows; a new row is then standardised by the pooled targets' statistics
  (``crossfuse adapt --method standardize`` re-fits them on one domain's rows).
- Domain generalisation (no target row is trained on): the reference is the source's training rows,
  pooled; each held-out domain is mapped by the statistics of its own scored rows, which is
  transductive (their values are read, never their labels), as test-time normalisation is.
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


def domains_to_map(dataset: MultimodalDataset, task: Task, split: TaskSplit) -> dict[str, np.ndarray]:
    """``domain -> the rows its statistics come from``, for every domain that is mapped (see the module
    docstring): the source domains (their training rows) and the target domains but a lone one trained on
    (their training rows, or in domain generalisation their scored rows)."""
    chosen = {d: split.source_train[dataset.domains[split.source_train] == d] for d in task.source}
    adapting = len(split.target_train) > 0
    if not adapting or len(task.target) > 1:
        rows = split.target_train if adapting else split.target_test
        chosen |= {d: rows[dataset.domains[rows] == d] for d in task.target}
    return chosen


def match_domain_moments(dataset: MultimodalDataset, task: Task, split: TaskSplit) -> None:
    """Map the rows of each domain that :func:`domains_to_map` names onto the reference's moments,
    modality by modality, in ``dataset`` (replaced arrays; a NaN stays NaN; a domain's validation rows go
    with its training rows)."""
    reference_rows = split.target_train if len(split.target_train) else split.source_train
    whose = "the unlabelled target rows" if len(split.target_train) else "the source's training rows"
    mapped_domains = domains_to_map(dataset, task, split)
    for name, array in dataset.modalities.items():
        present = present_rows(array[reference_rows])
        if len(present) == 0:
            raise ConfigError(
                f"normalization 'domain' standardises modality {name!r} by the statistics of {whose}, "
                "and none of them has it (use auto, feature or global)"
            )
        reference = Standardize(array.shape[1:], "domain").fit(present)
        kind, to_mean = reference.kind, reference.mean.double().numpy()
        dataset.standardization_kinds[name] = kind
        to_scale = reference.std.double().numpy()
        mapped = array.astype(np.result_type(array.dtype, np.float32))  # a copy, of a float type
        for domain, own in mapped_domains.items():
            if len(present_rows(array[own])) == 0:
                continue  # no row of this domain has the modality: nothing to map
            mean, scale = statistics(array[own], kind)
            rows = np.flatnonzero(dataset.domains == domain)
            moved = (array[rows].astype(np.float64) - mean) / scale * to_scale + to_mean
            mapped[rows] = moved.astype(mapped.dtype)
        dataset.modalities[name] = mapped
