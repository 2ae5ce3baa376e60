"""Samples that lack a modality, in training and in the target: learned placeholders against filling in
the mean.

Data: the digits halves (``benchmarks/digits_halves.py``: scikit-learn's 8x8 digits, left and right
halves as two modalities, the target rotated 10 degrees with noise). For each share ``s``, each sample
(source and target alike) loses one of its halves, chosen at random, with probability ``s``: its values
become NaN, which crossfuse reads as "this sample lacks the modality" and answers with a learned
placeholder. The comparison is what a user would do without that: fill each missing half with the mean of
that half over the samples of its domain that have it (label-free; rounded on the source, whose pixels
are integers, so that `auto` normalisation chooses the scale it chooses on the complete data), then train
as on complete data. Both
with default settings (late fusion), seeds 0-2, target accuracy (%) on the same scored rows; beside them
a logistic regression (``StandardScaler``) on the mean-filled halves, and every method on the complete
data.

    python benchmarks/missing_samples.py --shares 0.15 0.3 0.5 --seeds 0 1 2 --out runs/missing-samples
"""

from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from digits_halves import logistic_regression_baseline, write_digits_halves  # noqa: E402
from two_moons import crossfuse_run, percent  # noqa: E402

METHODS = ["source-only", "dann", "mixup"]
#: Seeds the choice of the samples that lose a half (the same holes for every method and run seed).
HOLES_SEED = 1234


def write_with_holes(complete: Path, root: Path, share: float) -> tuple[Path, Path]:
    """Two copies of ``complete``: one where each sample loses a random half with probability ``share``
    (NaN), one where those halves hold the mean of the samples that kept theirs."""
    holes, filled = root / "holes", root / "mean-filled"
    for folder in (holes, filled):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(complete, folder)
    names = sorted(p.stem for p in (complete / "modalities").glob("*.npy"))
    arrays = {m: np.load(complete / "modalities" / f"{m}.npy") for m in names}
    domains = np.load(complete / "domains.npy")
    rng = np.random.default_rng(HOLES_SEED)
    n = len(arrays[names[0]])
    loses = rng.random(n) < share
    which = rng.integers(0, len(names), n)
    for i, m in enumerate(names):
        gone = loses & (which == i)
        with_holes = arrays[m].copy()
        with_holes[gone] = np.nan
        np.save(holes / "modalities" / f"{m}.npy", with_holes)
        mean_filled = arrays[m].copy()
        for domain in np.unique(domains):
            rows = domains == domain
            kept = arrays[m][rows & ~gone]
            mean = kept.mean(0)
            if np.array_equal(kept, np.round(kept)):
                # the source's pixel intensities stay integers, so that `auto` normalisation chooses the
                # scale it chooses on the complete data
                mean = np.round(mean)
            mean_filled[rows & gone] = mean
        np.save(filled / "modalities" / f"{m}.npy", mean_filled)
    return holes, filled


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shares", type=float, nargs="+", default=[0.15, 0.3, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/missing-samples"))
    args = parser.parse_args()
    complete = write_digits_halves(args.out / "complete")
    folders = {"complete": complete}
    for share in args.shares:
        holes, filled = write_with_holes(complete, args.out / f"share-{share:g}", share)
        folders[f"{share:g} placeholders"], folders[f"{share:g} mean-filled"] = holes, filled
    jobs = [
        (name, method, seed, folder, folder.parent / "runs" / f"{folder.name}-{method}-seed{seed}")
        for name, folder in folders.items()
        for method in args.methods
        for seed in args.seeds
    ]
    with ThreadPoolExecutor(args.jobs) as pool:
        metrics = list(
            pool.map(lambda job: crossfuse_run(job[3], "original", "rotated", job[1], job[2], job[4]), jobs)
        )
    accuracy = {
        (name, method, seed): m["target_accuracy"]
        for (name, method, seed, *_), m in zip(jobs, metrics, strict=True)
    }
    print(
        f"digits halves, late fusion, default settings, seeds {args.seeds}: target accuracy (%), mean ± std"
    )
    print(
        "| samples that lack a half | filled with | logistic regression | " + " | ".join(args.methods) + " |"
    )
    print("| --- | --- | --- | " + " | ".join("---" for _ in args.methods) + " |")
    for name, folder in folders.items():
        share, filled_with = ("0", "–") if name == "complete" else name.split(" ")
        regression = (  # the logistic regression takes the mean-filled copy only
            "–"
            if filled_with == "placeholders"
            else percent([logistic_regression_baseline(folder, s) for s in args.seeds])
        )
        cells = [percent([accuracy[(name, method, s)] for s in args.seeds]) for method in args.methods]
        print(f"| {float(share):.0%} | {filled_with} | {regression} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
