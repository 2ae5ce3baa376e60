"""Label shift: scikit-learn's bundled wine data, split by alcohol content, where the domains' class
proportions differ as much as their inputs (``--data-set cancer``: its bundled breast-cancer data, split
by tumour texture).

The 178 wines (three cultivars, 13 chemical measurements) are split at the median alcohol content: the
source is the low-alcohol half, the target the high-alcohol half. Cultivar 2 is 76% of the source and
8% of the target; cultivar 1 is 13% and 63%. Methods that match the two domains' feature distributions
(DANN, MMD, CORAL, JAN, ...) assume the classes keep their proportions (Zhao et al., "On Learning
Invariant Representations for Domain Adaptation", ICML 2019: aligning the marginals then moves target
rows onto the wrong classes), so this problem shows what they do when that assumption fails. Two
modalities: the first seven measurements and the last six.

    python benchmarks/label_shift.py --seeds 0 1 2 --out runs/label-shift
    python benchmarks/label_shift.py --data-set cancer --out runs/label-shift-cancer

The 569 breast tumours (Wisconsin diagnostic data: 30 measurements of cell nuclei, benign or malignant)
are split at the median of their mean texture: the source is the smoother half, 84% benign, the target
the rougher half, 42% benign. Three modalities, as the data set groups its measurements: the means, their
standard errors and the worst values. Both splits cut on an input, so ``p(y | x)`` is the same in both
domains (covariate shift) and the class shares move with the inputs.

Prints the class proportions, a logistic regression (``StandardScaler``) trained on the source rows of
each run's own split, and every method's target accuracy with default settings (label-free selection),
mean ± std over the seeds, with the oracle epoch's and the number of flagged runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from digits_halves import logistic_regression_baseline  # noqa: E402
from two_moons import crossfuse_run, percent, percent_cells  # noqa: E402

METHODS = ["source-only", "iw", "dann", "coral", "mmd", "mixup", "mcc", "cdan", "shot", "mimicry"]
METHODS += ["correspondence", "m3sda", "jan", "bnm", "vada", "iwdan"]


def write_wine(root: Path) -> Path:
    """The folder: modalities ``chemistry`` (7 measurements) and ``colour`` (6), domains by alcohol."""
    from sklearn.datasets import load_wine

    x, labels = load_wine(return_X_y=True)
    domains = np.where(x[:, 0] < np.median(x[:, 0]), "low", "high")
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    np.save(root / "modalities" / "chemistry.npy", x[:, :7].astype(np.float32))
    np.save(root / "modalities" / "colour.npy", x[:, 7:].astype(np.float32))
    np.save(root / "labels.npy", labels)
    np.save(root / "domains.npy", domains)
    return root


def write_cancer(root: Path) -> Path:
    """The folder: modalities ``mean``, ``standard_error`` and ``worst`` (10 measurements each), domains
    by mean texture (``smooth`` at or below the median, ``rough`` above)."""
    from sklearn.datasets import load_breast_cancer

    x, labels = load_breast_cancer(return_X_y=True)
    domains = np.where(x[:, 1] <= np.median(x[:, 1]), "smooth", "rough")
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    for start, name in enumerate(("mean", "standard_error", "worst")):
        np.save(root / "modalities" / f"{name}.npy", x[:, 10 * start : 10 * start + 10].astype(np.float32))
    np.save(root / "labels.npy", np.where(labels == 1, "benign", "malignant"))
    np.save(root / "domains.npy", domains)
    return root


#: ``--data-set`` -> (folder writer, source domain, target domain, what a domain is).
DATA_SETS = {
    "wine": (write_wine, "low", "high", "alcohol"),
    "cancer": (write_cancer, "smooth", "rough", "texture"),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--data-set", choices=sorted(DATA_SETS), default="wine")
    parser.add_argument("--out", type=Path, default=Path("runs/label-shift"))
    args = parser.parse_args()
    write, source, target, axis = DATA_SETS[args.data_set]
    folder = write(args.out / "data")
    labels, domains = np.load(folder / "labels.npy"), np.load(folder / "domains.npy")
    classes = np.unique(labels)
    for domain in (source, target):
        rows = labels[domains == domain]
        shares = ", ".join(f"{c} {100 * np.mean(rows == c):.1f}" for c in classes)
        print(f"{domain} {axis} ({len(rows)} rows): classes (%) {shares}")
    baseline = [logistic_regression_baseline(folder, s, source, target) for s in args.seeds]
    print(f"seeds {args.seeds}; target accuracy (%), label-free selection, mean ± std")
    print(f"logistic regression (StandardScaler): {percent(baseline)}")
    print("| method | target accuracy | oracle epoch | flagged runs |")
    print("| --- | --- | --- | --- |")
    for method in args.methods:
        runs = [
            crossfuse_run(folder, source, target, method, seed, args.out / f"{method}-seed{seed}")
            for seed in args.seeds
        ]
        cells = percent_cells(runs, ("target_accuracy", "oracle_target_accuracy"))
        flagged = sum(bool(m.get("warnings")) for m in runs)
        print(f"| {method} | " + " | ".join(cells) + f" | {flagged} of {len(runs)} |")


if __name__ == "__main__":
    main()
