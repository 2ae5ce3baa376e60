"""Domain generalisation on real speech: the Free Spoken Digit Dataset (FSDD) as a data folder whose six
speakers are its domains, each speaker held out in turn.

The folder (written to ``--out``/folder, never to the repository) holds one modality, the MFCC sequence
``(40, 13)`` of every recording that AV-Digits computes, the digit as the label and the speaker as the
domain. The script runs ``crossfuse bench --protocol leave-one-domain-out`` on it unchanged (the command a
user would run on a folder of their own) and prints, for each held-out speaker, target accuracy of every
domain-generalisation method (default settings, seeds given) beside a logistic regression on pooled
MFCC statistics (each coefficient's mean and standard deviation over the frames, standardised; fitted on
the five other speakers).

    python benchmarks/fsdd_speakers.py --seeds 0 1 2 --out runs/fsdd-speakers
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def write_fsdd_folder(root: Path) -> Path:
    """The FSDD recordings as a crossfuse data folder: ``modalities/audio.npy`` (N, 40, 13),
    ``labels.npy`` (digits), ``domains.npy`` (speaker names)."""
    from crossfuse.data.avdigits import SPEAKERS, audio_features

    audio = audio_features()
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    np.save(root / "modalities" / "audio.npy", audio["features"].astype(np.float32))
    np.save(root / "labels.npy", audio["digit"])
    np.save(root / "domains.npy", np.array([SPEAKERS[s] for s in audio["speaker"]]))
    return root


def pooled_statistics(sequences: np.ndarray) -> np.ndarray:
    """Each MFCC coefficient's mean and standard deviation over the frames: ``(N, 2 F)``."""
    return np.concatenate([sequences.mean(1), sequences.std(1)], axis=1)


def logistic_regression_by_speaker(root: Path) -> dict[str, float]:
    """Accuracy on each held-out speaker of a standardised logistic regression on pooled statistics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = pooled_statistics(np.load(root / "modalities" / "audio.npy"))
    labels, domains = np.load(root / "labels.npy"), np.load(root / "domains.npy")
    scores = {}
    for speaker in sorted(set(domains.tolist())):
        held = domains == speaker
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(features[~held], labels[~held])
        scores[speaker] = float(model.score(features[held], labels[held]))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/fsdd-speakers"))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    folder = write_fsdd_folder(args.out / "folder")
    baseline = logistic_regression_by_speaker(folder)
    bench = args.out / "bench"
    command = [
        sys.executable, "-m", "crossfuse", "bench", "--protocol", "leave-one-domain-out",
        "--data", str(folder), "--out", str(bench), "--jobs", str(args.jobs),
        "--seeds", ",".join(map(str, args.seeds)),
    ]  # fmt: skip
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    with open(bench / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    speakers = sorted(baseline)
    methods = sorted({r["transfer"] for r in rows}, key=lambda m: (m != "erm", m))
    print("\ntarget accuracy (%) on each held-out speaker, mean ± std over seeds", args.seeds)
    print(f"{'method':<18}" + "".join(f"{s:>14}" for s in speakers) + f"{'mean':>14}")
    print(
        f"{'logistic regr.':<18}"
        + "".join(f"{100 * baseline[s]:>14.1f}" for s in speakers)
        + f"{100 * np.mean(list(baseline.values())):>14.1f}"
    )
    means = {}
    for method in methods:
        by_seed = {}
        for r in rows:
            if r["transfer"] == method:
                by_seed.setdefault(r["seed"], {})[r["target"]] = float(r["target_accuracy"])
        cells = []
        for s in speakers:
            values = [v[s] for v in by_seed.values() if s in v]
            cells.append(f"{100 * np.mean(values):>7.1f} ± {100 * np.std(values):<4.1f}")
        seed_means = [np.mean([v[s] for s in speakers]) for v in by_seed.values() if len(v) == len(speakers)]
        means[method] = (np.mean(seed_means), np.std(seed_means))
        print(f"{method:<18}" + "".join(f"{c:>14}" for c in cells) + f"{100 * means[method][0]:>8.1f} ± "
              f"{100 * means[method][1]:.1f}")  # fmt: skip
    erm = means["erm"]
    gap = erm[0] - np.mean(list(baseline.values()))
    print(f"\nerm vs logistic regression on the mean: {100 * gap:+.1f} points")
    for method, (mean, spread) in means.items():
        if method != "erm":
            margin = max(spread, erm[1])
            print(f"{method} vs erm: {100 * (mean - erm[0]):+.1f} points (larger spread {100 * margin:.1f})")


if __name__ == "__main__":
    main()
