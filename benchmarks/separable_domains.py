"""Adaptation when the domains are trivially separable: many classes, few rows, wide deep-feature-like inputs.

The shape of the standard image-feature benchmarks (Office-31: 31 classes, 2,048 ResNet features, a few
hundred images a domain), written out so that it runs offline: 31 classes, 20 rows a class in each
domain, 2,048 features ``ReLU(mu_y + e)`` (class means ``N(0, 0.35^2)`` a feature, unit noise), and the
target moved by one fixed random vector (``0.3 N(0, 1)`` a feature). A logistic regression trained on the
source classifies the target almost perfectly: the shift is harmless to the classes, but one linear
direction tells the domains apart without error, as it nearly does for real deep features.

Every single-input adaptation method with default settings, seeds 0-2, target accuracy (%) with
label-free selection (``--selection``, ``source-val`` by default), the oracle epoch's, source-validation
accuracy, and how many runs were flagged (a collapse onto one class, say).

    OMP_NUM_THREADS=1 python benchmarks/separable_domains.py --jobs 2 --out runs/separable-domains
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from two_moons import crossfuse_run, percent  # noqa: E402

CLASSES, ROWS_PER_CLASS, FEATURES = 31, 20, 2048


def adaptation_methods() -> list[str]:
    """Every registered method that adapts one input to unlabelled target rows (no labelled target rows,
    no second modality needed), source-only first."""
    from crossfuse.registry import TRANSFERS

    return [
        name
        for name in TRANSFERS
        if not TRANSFERS[name].domain_generalization
        and not TRANSFERS[name].needs_target_shots
        and TRANSFERS[name].min_modalities <= 1
    ]


def write_separable_domains(root: Path, seed: int = 0) -> Path:
    """The folder: one modality ``features`` (N, 2048), labels 0-30, domains ``source`` / ``target``."""
    rng = np.random.default_rng(seed)
    means = 0.35 * rng.normal(size=(CLASSES, FEATURES))
    labels = np.repeat(np.arange(CLASSES), 2 * ROWS_PER_CLASS)
    target = np.tile(np.r_[np.zeros(ROWS_PER_CLASS, bool), np.ones(ROWS_PER_CLASS, bool)], CLASSES)
    features = np.maximum(means[labels] + rng.normal(size=(len(labels), FEATURES)), 0)
    features += target[:, None] * 0.3 * rng.normal(size=FEATURES)
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    np.save(root / "modalities" / "features.npy", features.astype(np.float32))
    np.save(root / "labels.npy", labels)
    np.save(root / "domains.npy", np.where(target, "target", "source"))
    return root


def logistic_regression(root: Path) -> float:
    """Target accuracy of a standardised logistic regression trained on every source row."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.load(root / "modalities" / "features.npy")
    y, domains = np.load(root / "labels.npy"), np.load(root / "domains.npy")
    source = domains == "source"
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[source], y[source])
    return float(model.score(x[~source], y[~source]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=adaptation_methods())
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/separable-domains"))
    parser.add_argument(
        "--selection", default="source-val", help="the label-free criterion (crossfuse run --selection)"
    )
    args = parser.parse_args()
    folder = write_separable_domains(args.out / "data")
    jobs = [(method, seed) for method in args.methods for seed in args.seeds]

    def one(job: tuple[str, int]) -> dict:
        method, seed = job
        suffix = "" if args.selection == "source-val" else f"-{args.selection}"
        run = args.out / "runs" / f"{method}{suffix}-seed{seed}"
        return crossfuse_run(folder, "source", "target", method, seed, run, ["--selection", args.selection])

    with ThreadPoolExecutor(args.jobs) as pool:  # each run is its own process
        metrics = dict(zip(jobs, pool.map(one, jobs), strict=True))
    print(
        f"{CLASSES} classes, {ROWS_PER_CLASS} rows a class a domain, {FEATURES} features; seeds "
        f"{args.seeds}; selection {args.selection}; logistic regression (StandardScaler) on the source: "
        f"{100 * logistic_regression(folder):.1f}"
    )
    print("| method | target accuracy | oracle epoch | source-val accuracy | flagged |")
    print("| --- | --- | --- | --- | --- |")
    for method in args.methods:
        runs = [metrics[(method, seed)] for seed in args.seeds]
        cells = [percent([r[k] for r in runs]) for k in ("target_accuracy", "oracle_target_accuracy")]
        cells.append(percent([r["source_val_accuracy"] for r in runs]))
        flagged = sum(bool(r["warnings"]) for r in runs)
        print(f"| {method} | {' | '.join(cells)} | {flagged} of {len(runs)} |", flush=True)


if __name__ == "__main__":
    main()
