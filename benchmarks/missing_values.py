"""Missing values (a NaN in part of a sample), in training and in the target: crossfuse fills each in with
its feature's training mean inside the model (with ``--missing-indicators``, the feature also gets an
indicator column), against scikit-learn models on the same holes.

Data sets: the breast cancer data split by texture (``benchmarks/label_shift.py --data-set cancer``: 30
measurements as three modalities, source the smoother half) and the digits halves
(``benchmarks/digits_halves.py``: left and right halves of scikit-learn's 8x8 digits, the target rotated).
For each share ``s`` and mechanism, values are made NaN, source and target alike (the same holes for every
method and seed): ``mcar``, every value with probability ``s``, independently (missing completely at
random); ``mnar``, a value above its feature's median (over all rows) with probability ``2 s``, never one
at or below it (missing not at random: the high readings are the ones lost, as a sensor saturates or a
test is skipped when the last one was high). crossfuse runs with default settings (late fusion), seeds
0-2, target accuracy (%) with label-free selection, on the data with holes and on the complete data; the
columns ``..., indicators`` run with ``--missing-indicators``.
Beside them, on the run's own split (source training rows): ``SimpleImputer(mean)`` + ``StandardScaler``
+ logistic regression, the same with ``add_indicator=True``, and a histogram gradient-boosting
classifier, which takes NaN natively.

    python benchmarks/missing_values.py --shares 0.1 0.3 --seeds 0 1 2 --out runs/missing-values
"""

from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from digits_halves import write_digits_halves  # noqa: E402
from label_shift import write_cancer  # noqa: E402
from two_moons import crossfuse_run, percent  # noqa: E402

METHODS = ["source-only", "source-only, indicators", "dann", "dann, indicators"]
#: What a ``METHODS`` entry runs: (transfer method, options).
RUNS = {
    "source-only": ("source-only", []),
    "source-only, indicators": ("source-only", ["--missing-indicators"]),
    "dann": ("dann", []),
    "dann, indicators": ("dann", ["--missing-indicators"]),
}
MECHANISMS = ("mcar", "mnar")
#: Seeds the choice of the values that go missing (the same holes for every method and run seed).
HOLES_SEED = 4321
#: The scikit-learn models beside crossfuse, as the table names them.
BASELINES = [
    "logistic regression (mean-imputed)",
    "logistic regression (mean-imputed, indicators)",
    "gradient boosting (NaN native)",
]
#: ``--data-sets`` -> (folder writer, source domain, target domain).
DATA_SETS = {
    "cancer": (write_cancer, "smooth", "rough"),
    "digits-halves": (write_digits_halves, "original", "rotated"),
}


def write_with_holes(complete: Path, root: Path, share: float, mechanism: str = "mcar") -> Path:
    """A copy of ``complete`` with holes of ``mechanism`` (see the module docstring) at ``share`` (a sample
    keeps at least one value: one without any would lack every modality, which a folder may not hold)."""
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(complete, root)
    names = sorted(p.stem for p in (complete / "modalities").glob("*.npy"))
    arrays = {m: np.load(complete / "modalities" / f"{m}.npy").astype(np.float32) for m in names}
    rng = np.random.default_rng(HOLES_SEED)
    holes = {m: rng.random(x.shape) < share for m, x in arrays.items()}
    if mechanism == "mnar":
        holes = {
            m: (rng.random(x.shape) < 2 * share) & (x > np.median(x, axis=0, keepdims=True))
            for m, x in arrays.items()
        }
    first = names[0]
    every = np.logical_and.reduce([h.reshape(len(h), -1).all(1) for h in holes.values()])
    holes[first].reshape(len(every), -1)[every, 0] = False
    for m, x in arrays.items():
        x[holes[m]] = np.nan
        np.save(root / "modalities" / f"{m}.npy", x)
    return root


def sklearn_baselines(root: Path, seed: int, source: str, target: str) -> dict[str, float]:
    """Target accuracy of an imputed, standardised logistic regression and of histogram gradient
    boosting, trained on the run's own source training rows (inputs flattened and concatenated)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from crossfuse.data.dataset import Task, split_task
    from crossfuse.data.folder import load_folder

    data = load_folder(root)
    split = split_task(data, Task((source,), (target,)), seed)
    x = np.concatenate([a.reshape(len(a), -1) for _, a in sorted(data.modalities.items())], axis=1)
    train, test = split.source_train, split.target_test
    models = {
        BASELINES[0]: make_pipeline(
            SimpleImputer(strategy="mean"), StandardScaler(), LogisticRegression(max_iter=2000)
        ),
        BASELINES[1]: make_pipeline(
            SimpleImputer(strategy="mean", add_indicator=True),
            StandardScaler(),
            LogisticRegression(max_iter=2000),
        ),
        BASELINES[2]: HistGradientBoostingClassifier(random_state=seed),
    }
    return {
        name: float(model.fit(x[train], data.labels[train]).score(x[test], data.labels[test]))
        for name, model in models.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--mechanisms", nargs="+", choices=MECHANISMS, default=list(MECHANISMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--data-sets", nargs="+", choices=sorted(DATA_SETS), default=sorted(DATA_SETS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/missing-values"))
    args = parser.parse_args()
    folders = {}
    for name in args.data_sets:
        write, source, target = DATA_SETS[name]
        complete = write(args.out / name / "complete")
        folders[(name, "none", 0.0)] = complete
        for mechanism in args.mechanisms:
            for share in args.shares:
                where = args.out / name / (f"share-{share:g}" if mechanism == "mcar" else f"mnar-{share:g}")
                folders[(name, mechanism, share)] = write_with_holes(complete, where, share, mechanism)

    def run_dir(folder: Path, method: str, seed: int) -> Path:
        # without holes there is nothing to indicate: each method's two entries are one run
        extra = "-indicators" if RUNS[method][1] and folder.name != "complete" else ""
        return folder.parent / "runs" / f"{folder.name}-{RUNS[method][0]}-seed{seed}{extra}"

    jobs: dict[Path, tuple] = {}
    for key, folder in folders.items():
        for method in args.methods:
            for seed in args.seeds:
                jobs.setdefault(run_dir(folder, method, seed), (key, method, seed, folder))

    def one(item):
        where, ((name, _, _), method, seed, folder) = item
        _, source, target = DATA_SETS[name]
        transfer, extra = RUNS[method]
        return crossfuse_run(folder, source, target, transfer, seed, where, extra)

    with ThreadPoolExecutor(args.jobs) as pool:
        metrics = dict(zip(jobs, pool.map(one, jobs.items()), strict=True))
    accuracy = {
        (key, method, seed): metrics[run_dir(folder, method, seed)]["target_accuracy"]
        for key, folder in folders.items()
        for method in args.methods
        for seed in args.seeds
    }
    print(f"late fusion, default settings, seeds {args.seeds}: target accuracy (%), mean ± std")
    header = ["data set", "holes", "values missing", *args.methods, *BASELINES]
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for (name, mechanism, share), folder in folders.items():
        _, source, target = DATA_SETS[name]
        baselines = [sklearn_baselines(folder, s, source, target) for s in args.seeds]
        key = (name, mechanism, share)
        cells = [percent([accuracy[(key, method, s)] for s in args.seeds]) for method in args.methods]
        cells += [percent([b[k] for b in baselines]) for k in BASELINES]
        print(f"| {name} | {mechanism} | {share:.0%} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
