"""``crossfuse robustness RUN``: a finished run's model under missing and noisy modalities, on the run's own
target test rows (:mod:`crossfuse.evaluation.robustness` has the perturbations and the figures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from crossfuse.errors import DataError

ROBUSTNESS = "robustness.json"


def measure_run(run_dir: Path, seed: int = 0) -> dict:
    """Measure (or read back) ``run_dir/robustness.json``: clean score, each modality missing, noise
    curves, and relative robustness of each curve. The score is target accuracy, or target MAE for a
    regression (lower is better there)."""
    from crossfuse.config import RunConfig
    from crossfuse.evaluation.robustness import relative_robustness, robustness_curves
    from crossfuse.predictor import load
    from crossfuse.runner import prepare_task
    from crossfuse.train.loop import accuracy, mean_absolute_error

    path = run_dir / ROBUSTNESS
    if path.exists():
        return json.loads(path.read_text())
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise DataError(f"{config_path}: missing file (is {run_dir} a finished crossfuse run folder?)")
    config = RunConfig(**yaml.safe_load(config_path.read_text()))
    model = load(run_dir)
    dataset, _, split = prepare_task(config)
    rows = split.target_test[dataset.labelled[split.target_test]]
    if len(rows) == 0:
        raise DataError(f"{run_dir}: no target test row has a label, so robustness cannot be scored")
    inputs = dataset.rows(rows)
    regression = model.objective == "regression"
    score = mean_absolute_error if regression else accuracy
    result = robustness_curves(model.model, inputs, dataset.labels[rows], score, seed)
    result |= {
        "metric": "target MAE" if regression else "target accuracy",
        "relative_robustness": {k: relative_robustness(v) for k, v in result["noise"].items()},
        "missing_stands_in": "placeholder" if len(model.model.placeholders) else "source mean",
    }
    path.write_text(json.dumps(result, indent=2))
    return result


def plot_curves(curves: dict[str, list[float]], strengths: list[float], metric: str, path: Path, title: str):
    """One line a curve: score against noise strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        ax.plot(strengths, curve, marker="o", markersize=3, label=name)
    ax.set_xlabel("noise strength (x source scale; for sequences, share of frames masked)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def describe(result: dict, reference: dict | None = None) -> list[str]:
    """The printed table of one run's robustness (and effective robustness against ``reference``)."""
    from crossfuse.evaluation.robustness import effective_robustness

    lines = [f"{result['metric']}: clean {result['clean']:.4f}"]
    for m, value in result["missing"].items():
        lines.append(f"  without {m} ({result['missing_stands_in']}): {value:.4f}")
    lines.append(
        "| noise on | " + " | ".join(f"{s:g}" for s in result["strengths"]) + " | relative | effective |"
    )
    lines.append("| --- |" + " --- |" * (len(result["strengths"]) + 2))
    for target, curve in result["noise"].items():
        effective = "–"
        if reference is not None and target in reference["noise"]:
            lower = "MAE" in result["metric"]
            effective = f"{effective_robustness(curve, reference['noise'][target], lower):+.3f}"
        cells = " | ".join(f"{v:.3f}" for v in curve)
        lines.append(f"| {target} | {cells} | {result['relative_robustness'][target]:.3f} | {effective} |")
    return lines


def mean_curve(results: list[dict], target: str) -> list[float]:
    return list(np.mean([r["noise"][target] for r in results if target in r["noise"]], axis=0))
