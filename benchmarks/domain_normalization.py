"""Per-domain standardisation (``--normalization domain``) against the default (``auto``) on the suite.

Each domain standardised by its own statistics (the model keeps the target's, and each source domain's
rows are mapped onto them) undoes a shift that changes every feature by a gain and an offset, and does
harm where the classes' shares differ between the domains. Data sets, each a bring-your-own-data folder
written by the benchmark beside it:

- two moons (target rotated 35 degrees), digits halves as two vector modalities (rotated 10 degrees,
  with noise), USPS -> MNIST as 256-pixel vectors (needs the data mirror), AV-Digits' default task;
- the FSDD speakers (needs the data mirror): each speaker in turn is the target, the five others the
  source (as in per-speaker cepstral mean and variance normalisation);
- label shift: the wine data by alcohol and the breast-cancer data by texture
  (``benchmarks/label_shift.py``), where the classes' shares move with the domain;
- a recalibrated instrument: the breast-cancer data split in two at random (seeded, the classes' shares
  equal up to sampling), the target's 30 measurements recorded with another gain and offset, ``x' = 0.7 x
  + 1 std`` per measurement (skada's ``conditional_shift``, in units of each feature's spread).

``source-only`` and ``dann`` with default settings, seeds 0-2, target accuracy (%) with label-free
selection, mean ± std over the seeds (FSDD: over the six speakers and the seeds).

A second table is the same idea without the source data and without training: each ``source-only``
run's model (``auto``) scored on every row of its target domain, then ``crossfuse adapt --method
standardize`` (its input standardisation re-fitted on those rows) scored on them again. A third is a
regression: scikit-learn's diabetes data by sex (``benchmarks/diabetes.py``), target mean absolute error.

    python benchmarks/domain_normalization.py --seeds 0 1 2 --jobs 2 --out runs/domain-normalization
    python benchmarks/domain_normalization.py --methods coral mcc mixup vada iwdan \
        --data-sets "digits halves" "USPS -> MNIST" --out runs/domain-normalization
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from diabetes import write_diabetes  # noqa: E402
from digits_halves import write_digits_halves  # noqa: E402
from fsdd_speakers import write_fsdd_folder  # noqa: E402
from label_shift import write_cancer, write_wine  # noqa: E402
from normalization import write_usps_mnist  # noqa: E402
from two_moons import percent, write_two_moons  # noqa: E402

METHODS = ["source-only", "dann"]
MODES = ["auto", "domain"]
#: skada's ``conditional_shift``: the target is the source's distribution times 0.7, plus 1.
GAIN, OFFSET = 0.7, 1.0


def write_recalibrated_cancer(root: Path, seed: int = 0) -> Path:
    """The breast-cancer data in two random halves, ``clinic_a`` and ``clinic_b``; ``clinic_b``'s
    measurements are ``GAIN x + OFFSET std``, each feature's standard deviation over all rows. Three
    modalities as :func:`label_shift.write_cancer` groups them."""
    from sklearn.datasets import load_breast_cancer

    x, labels = load_breast_cancer(return_X_y=True)
    second = np.random.default_rng(seed).permutation(len(x)) < len(x) // 2
    x = x.copy()
    x[second] = GAIN * x[second] + OFFSET * x.std(0)
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    for start, name in enumerate(("mean", "standard_error", "worst")):
        np.save(root / "modalities" / f"{name}.npy", x[:, 10 * start : 10 * start + 10].astype(np.float32))
    np.save(root / "labels.npy", np.where(labels == 1, "benign", "malignant"))
    np.save(root / "domains.npy", np.where(second, "clinic_b", "clinic_a"))
    return root


def crossfuse_run(data: str, source: list[str], target: str, method: str, mode: str, seed: int, out: Path):
    """``metrics.json`` of ``crossfuse run`` in its own process (unless ``out`` finished)."""
    if not (out / "metrics.json").exists():
        command = [sys.executable, "-m", "crossfuse", "run", "--data", data]
        command += ["--transfer", method, "--normalization", mode, "--seed", str(seed), "--out", str(out)]
        if source:  # else a named data set's default task: no --source, no --target
            command += ["--source", ",".join(source), "--target", target]
        subprocess.run(command, check=True, capture_output=True)
    return json.loads((out / "metrics.json").read_text())


def target_folder(data: str, target: str, root: Path) -> Path:
    """Every row of the ``target`` domain of ``data`` (a folder, or AV-Digits' default task) as a folder
    of its own, labels in their values."""
    if (root / "labels.npy").exists():
        return root
    from crossfuse.data.public import write_folder
    from crossfuse.runner import load_dataset

    if data == "av-digits":
        from crossfuse.config import load_config

        dataset = load_dataset(load_config(None, {}))
        rows = np.isin(dataset.domains, dataset.resolve_task("default", None, None).target)
    else:
        from crossfuse.data.folder import load_folder

        dataset = load_folder(Path(data))
        rows = dataset.domains == target
    labels = dataset.labels[rows]
    if dataset.objective == "classification":
        labels = np.asarray(dataset.classes)[labels]
    dataset.modalities = {m: x[rows] for m, x in dataset.modalities.items()}
    dataset.labels, dataset.domains = labels, dataset.domains[rows]
    write_folder(dataset, root)
    return root


def source_free(run: Path, folder: Path, out: Path) -> tuple[float, float]:
    """Accuracy (a regression: mean absolute error) of ``run``'s model on every row of ``folder``, before
    and after ``crossfuse adapt --method standardize``."""
    import crossfuse
    from crossfuse.data.folder import read_modalities
    from crossfuse.source_free import adapt_run

    inputs, _ = read_modalities(folder)
    labels = np.load(folder / "labels.npy")
    model = crossfuse.load(run)
    predicted = model.predict(inputs)
    if model.objective == "regression":
        before = float(np.mean(np.abs(predicted.reshape(labels.shape) - labels)))
    else:
        before = float(np.mean(predicted.astype(str) == labels.astype(str)))
    after, _ = adapt_run(run, folder, out, method="standardize")
    return before, after


def regression(out: Path, seeds: list[int]) -> None:
    """Diabetes, source sex 1, target sex 2 (``benchmarks/diabetes.py``): target MAE of source-only
    with each normalisation, and of the ``auto`` model before and after ``adapt --method standardize``."""
    folder = write_diabetes(out / "diabetes")
    rows = {mode: [] for mode in MODES}
    before, after = [], []
    for seed in seeds:
        for mode in MODES:
            run = out / "runs" / f"diabetes-source-only-{mode}-seed{seed}"
            rows[mode].append(
                crossfuse_run(str(folder), ["sex1"], "sex2", "source-only", mode, seed, run)["target_mae"]
            )
        target = target_folder(str(folder), "sex2", out / "targets" / "diabetes-sex2")
        run = out / "runs" / f"diabetes-source-only-auto-seed{seed}"
        pair = source_free(run, target, out / "adapted" / run.name)
        before.append(pair[0])
        after.append(pair[1])
    cell = lambda values: f"{np.mean(values):.2f} ± {np.std(values):.2f}"  # noqa: E731
    print("\ndiabetes (regression), source-only, target MAE (lower is better)")
    print(
        "| source-only, auto | source-only, domain | auto model, every target row "
        "| after adapt --method standardize |"
    )
    print("| --- | --- | --- | --- |")
    print(f"| {cell(rows['auto'])} | {cell(rows['domain'])} | {cell(before)} | {cell(after)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/domain-normalization"))
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--data-sets", nargs="+", help="names as the table prints them (default: all)")
    args = parser.parse_args()
    from crossfuse.errors import DataError

    tasks: dict[str, list[tuple[str, list[str], str]]] = {
        "two moons": [(str(write_two_moons(args.out / "two-moons")), ["source"], "target")],
        "digits halves": [(str(write_digits_halves(args.out / "digits-halves")), ["original"], "rotated")],
        "wine by alcohol (label shift)": [(str(write_wine(args.out / "wine")), ["low"], "high")],
        "breast cancer by texture (label shift)": [
            (str(write_cancer(args.out / "cancer")), ["smooth"], "rough")
        ],
        "breast cancer, recalibrated target": [
            (str(write_recalibrated_cancer(args.out / "recalibrated")), ["clinic_a"], "clinic_b")
        ],
    }
    try:
        tasks["USPS -> MNIST"] = [(str(write_usps_mnist(args.out / "usps-mnist")), ["usps"], "mnist")]
        fsdd = write_fsdd_folder(args.out / "fsdd")
        speakers = sorted(set(np.load(fsdd / "domains.npy").tolist()))
        tasks["FSDD, one speaker the target"] = [
            (str(fsdd), [s for s in speakers if s != held], held) for held in speakers
        ]
        tasks["AV-Digits (default task)"] = [("av-digits", [], "default")]
    except DataError as error:
        print(f"USPS -> MNIST, FSDD and AV-Digits left out: {error}")
    if args.data_sets:
        unknown = sorted(set(args.data_sets) - set(tasks))
        if unknown:
            parser.error(f"--data-sets {unknown[0]!r}: choose from {', '.join(map(repr, tasks))}")
        tasks = {name: runs for name, runs in tasks.items() if name in args.data_sets}
    jobs = [
        (name, i, method, mode, seed)
        for name, runs in tasks.items()
        for i in range(len(runs))
        for method in args.methods
        for mode in MODES
        for seed in args.seeds
    ]

    def one(job):
        name, i, method, mode, seed = job
        data, source, target = tasks[name][i]
        out = args.out / "runs" / f"{Path(data).name}-{target}-{method}-{mode}-seed{seed}"
        return job, crossfuse_run(data, source, target, method, mode, seed, out)["target_accuracy"]

    with ThreadPoolExecutor(args.jobs) as pool:  # each run is its own process
        results = list(pool.map(one, jobs))
    table: dict = {}
    for (name, _, method, mode, _), accuracy in results:
        table.setdefault(name, {}).setdefault((method, mode), []).append(accuracy)
    print(
        f"target accuracy (%), default settings but --normalization, seeds {args.seeds}, label-free selection"
    )
    columns = [(method, mode) for method in args.methods for mode in MODES]
    print("| data set | " + " | ".join(f"{method}, {mode}" for method, mode in columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(percent(cells[column]) for column in columns) + " |", flush=True)

    if "source-only" not in args.methods:
        return
    print("\nsource-free: the source-only (auto) model on every target row, before and after")
    print("crossfuse adapt --method standardize (no training, no source data)")
    print("| data set | source-only model | adapt --method standardize |")
    print("| --- | --- | --- |")
    for name, runs in tasks.items():
        cells = {"before": [], "after": []}
        for data, _, target in runs:
            folder = target_folder(data, target, args.out / "targets" / f"{Path(data).name}-{target}")
            for seed in args.seeds:
                run = args.out / "runs" / f"{Path(data).name}-{target}-source-only-auto-seed{seed}"
                before, after = source_free(run, folder, args.out / "adapted" / run.name)
                cells["before"].append(before)
                cells["after"].append(after)
        print(f"| {name} | {percent(cells['before'])} | {percent(cells['after'])} |", flush=True)
    if not args.data_sets:
        regression(args.out, args.seeds)


if __name__ == "__main__":
    main()
