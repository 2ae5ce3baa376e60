"""The training state a checkpoint records, and the tracker of the epoch to keep."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class BestEpoch:
    """The best selection score so far and the epoch to keep: the latest whose score is within the
    criterion's tolerance of the best. ``stale`` counts epochs since the best last improved (for early
    stopping)."""

    best_score: float = -math.inf
    best_epoch: int = 0
    stale: int = 0

    def update(self, epoch: int, score: float, tolerance: Callable[[float], float]) -> tuple[bool, bool]:
        """Record ``epoch``'s ``score``; return (whether it improved the best, whether it is kept).

        ``tolerance(best)`` is measured from the best so far; the latest epoch within it of the best so far
        is also the latest within it of the final best, since epochs after the final best see it already.
        """
        improved = score > self.best_score + 1e-9
        self.stale = 0 if improved else self.stale + 1
        self.best_score = max(score, self.best_score)
        kept = score >= self.best_score - tolerance(self.best_score) - 1e-9
        if kept:
            self.best_epoch = epoch
        return improved, kept


@dataclass
class TrainState:
    """Progress of a run: what a checkpoint must hold to resume it exactly."""

    epoch: int = 0
    step_in_epoch: int = 0
    losses: list[float] = field(default_factory=list)
    #: Each named term of this epoch's losses so far (when the loss has several).
    loss_parts: dict[str, list[float]] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    best: BestEpoch = field(default_factory=BestEpoch)
    #: Steps in the stochastic weight average so far.
    averaged: int = 0

    def to_record(self) -> dict[str, Any]:
        """A JSON-serialisable record (the best-epoch fields flattened beside the rest)."""
        record = {k: v for k, v in asdict(self).items() if k != "best"}
        return record | asdict(self.best)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TrainState:
        best = BestEpoch(record["best_score"], record["best_epoch"], record["stale"])
        plain = {k: record[k] for k in ("epoch", "step_in_epoch", "losses", "history", "seconds")}
        return cls(
            **plain, best=best, averaged=record.get("averaged", 0), loss_parts=record.get("loss_parts", {})
        )
