"""The result of one run as a typed record: what ``metrics.json`` holds, what the command line prints and
what a benchmark's ``results.csv`` has a row of."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class RunResult:
    """One run's outcome. ``target_accuracy`` is the checkpoint chosen without target labels; ``None``
    when no scored target row has a label. ``oracle_target_accuracy`` is the best epoch by target labels,
    for reference only. Extra per-run figures (the per-modality ablation) live in ``extra``."""

    task: str
    fusion: str
    transfer: str
    seed: int
    selection: str = "source-val"
    objective: str = "classification"
    dataset: str = ""
    source_domains: list[str] = field(default_factory=list)
    target_domains: list[str] = field(default_factory=list)
    n_classes: int = 0
    target_accuracy: float | None = None
    oracle_target_accuracy: float | None = None
    source_val_accuracy: float | None = None
    best_epoch: int = 0
    epochs_run: int = 0
    train_seconds: float = 0.0
    n_source_train: int = 0
    n_source_val: int = 0
    n_target_train: int = 0
    n_target_test: int = 0
    n_target_test_labelled: int = 0
    n_target_shots: int = 0
    proxy_a_distance: float | None = None
    warnings: list[str] = field(default_factory=list)
    world_size: int = 1
    device: str = "cpu"
    torch: str = ""
    machine: str = ""
    target_accuracy_per_domain: dict[str, float | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The ``metrics.json`` mapping (``extra`` entries at the top level; a regression's
        ``target_mae``, ``target_rmse``, ``target_corr``, ``target_r2``, ``oracle_target_mae`` and
        ``source_val_mae`` among them)."""
        values = {k: v for k, v in asdict(self).items() if k != "extra"}
        if values["target_accuracy_per_domain"] is None:
            values.pop("target_accuracy_per_domain")
        return values | self.extra

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> RunResult:
        """Read a ``metrics.json`` mapping back (unknown keys go to ``extra``)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in metrics.items() if k in known}
        values.setdefault("n_target_test_labelled", metrics.get("n_target_test", 0))
        return cls(**values, extra={k: v for k, v in metrics.items() if k not in known})

    def row(self) -> dict[str, Any]:
        """A flat row for ``results.csv``: lists joined, mappings left out."""
        row = {}
        for key, value in self.metrics().items():
            if isinstance(value, list):
                row[key] = " | ".join(map(str, value))
            elif not isinstance(value, dict):
                row[key] = value
        return row

    def summary(self) -> str:
        """The line the command line prints after a run."""

        def share(value: float | None) -> str:
            if value is None:
                return "n/a (no labelled target row)" if self.target_domains else "n/a (no target domain)"
            return f"{value:.4f}"

        if self.objective == "regression":
            extra = self.extra

            def number(key: str) -> str:
                value = extra.get(key)
                return "n/a" if value is None else f"{value:.4g}"

            return (
                f"source-val MAE {number('source_val_mae')}  target MAE {number('target_mae')} "
                f"(RMSE {number('target_rmse')}, corr {number('target_corr')}, R2 {number('target_r2')}; "
                f"selected by {self.selection})  oracle MAE {number('oracle_target_mae')}  "
                f"[{self.train_seconds:.1f} s]"
            )
        line = (
            f"source-val accuracy {self.source_val_accuracy:.4f}  "
            f"target accuracy {share(self.target_accuracy)} (selected by {self.selection})  "
            f"oracle {share(self.oracle_target_accuracy)}  [{self.train_seconds:.1f} s]"
        )
        balanced = self.extra.get("target_balanced_accuracy")
        if balanced is not None:
            line += f"  target balanced accuracy {balanced:.4f}, macro F1 {self.extra['target_macro_f1']:.4f}"
        if self.target_accuracy_per_domain:
            per_domain = ", ".join(f"{d} {share(a)}" for d, a in self.target_accuracy_per_domain.items())
            line += f"  per target domain: {per_domain}"
        per_source = self.extra.get("source_val_accuracy_per_domain")
        if per_source:
            line += "  per source domain (val): " + ", ".join(f"{d} {a:.4f}" for d, a in per_source.items())
        return line
