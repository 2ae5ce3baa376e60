"""A run whose training loss has exploded stops there: its later epochs are not worth their time.

A run diverges when an epoch's mean training loss exceeds :data:`DIVERGENCE_FACTOR` times the first
epoch's (a positive loss). Over 1,090 finished runs of this project's benchmark commands on the machine
where this was written, every run that trained normally stayed within 1.5 times its first epoch's loss,
adversarial warm-ups included;
the one that diverged (LMF + DANN, seed 0, in the quick suite) reached 74 times it in epoch 16, 1,239
times in epoch 17 and 40,530 times later, its source-validation accuracy at chance from epoch 17 on. The
kept epoch is chosen as before from the epochs that ran, so stopping changes no result of such a run
unless a later epoch would have been kept, which a model at chance on its own source never is.
"""

from __future__ import annotations

from collections.abc import Sequence

#: How many times the first epoch's training loss an epoch's loss must exceed for the run to stop.
DIVERGENCE_FACTOR = 100.0


def divergence_ratio(losses: Sequence[float]) -> float | None:
    """The last epoch's mean training loss over the first's when the run has diverged by that measure
    (``> DIVERGENCE_FACTOR``); ``None`` otherwise, or when the first loss is not positive."""
    if len(losses) < 2 or not losses[0] > 0:
        return None
    ratio = losses[-1] / losses[0]
    return ratio if ratio > DIVERGENCE_FACTOR else None
