"""Missing modalities on AV-Digits: every fusion, source-only, with and without modality dropout, against
models trained on one modality alone.

For each fusion and seed, one run without modality dropout and one with ``--modality-dropout P``; each is
scored on the default task's target test rows with all modalities, with audio missing and with the image
missing (``crossfuse robustness``: a model trained with modality dropout uses its learned placeholder, one
without it sees the missing modality at its source mean). Unimodal baselines: late fusion of the one
remaining modality (audio alone, image alone), same seeds.

    python benchmarks/missing_modalities.py --seeds 0 1 2 --dropout 0.5 --out runs/missing
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

FUSIONS = ["early", "late", "hierarchical", "tfn", "lmf", "nuclear"]


def bench(out: Path, seeds: list[int], jobs: int, settings: dict) -> None:
    config = out / "settings.yaml"
    out.mkdir(parents=True, exist_ok=True)
    config.write_text("".join(f"{k}: {v}\n" for k, v in settings.items()) or "{}\n")
    command = [sys.executable, "-m", "crossfuse", "bench", "--suite", "full", "--tasks", "default"]
    command += [
        "--fusions",
        ",".join(FUSIONS),
        "--transfers",
        "source-only",
        "--seeds",
        ",".join(map(str, seeds)),
    ]
    command += ["--jobs", str(jobs), "--robustness", "--config", str(config), "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True)


def single(out: Path, modality: str, seed: int) -> float:
    run_dir = out / f"{modality}-seed{seed}"
    if not (run_dir / "metrics.json").exists():
        command = [sys.executable, "-m", "crossfuse", "run", "--modalities", modality, "--seed", str(seed)]
        subprocess.run([*command, "--out", str(run_dir)], check=True, capture_output=True)
    return json.loads((run_dir / "metrics.json").read_text())["target_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/missing"))
    args = parser.parse_args()
    variants = {0.0: args.out / "no-dropout", args.dropout: args.out / f"dropout-{args.dropout}"}
    for p, folder in variants.items():
        bench(folder, args.seeds, args.jobs, {"modality_dropout": p} if p else {})
    alone = {m: [single(args.out / "unimodal", m, s) for s in args.seeds] for m in ("audio", "image")}

    def pm(values) -> str:
        return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"

    print(f"AV-Digits default task, source-only, seeds {args.seeds}: target accuracy (%)")
    print(f"trained on audio alone: {pm(alone['audio'])}; on the image alone: {pm(alone['image'])}")
    print("| fusion | modality dropout | all | audio missing | image missing |")
    print("| --- | --- | --- | --- | --- |")
    for fusion in FUSIONS:
        for p, folder in variants.items():
            results = [
                json.loads(
                    (
                        folder / "runs" / f"default-{fusion}-source-only-seed{s}" / "robustness.json"
                    ).read_text()
                )
                for s in args.seeds
            ]
            cells = [pm([r["clean"] for r in results])]
            cells += [pm([r["missing"][m] for r in results]) for m in ("audio", "image")]
            print(f"| {fusion} | {p:g} | " + " | ".join(cells) + " |", flush=True)
    print("(audio missing leaves the image: compare it with the image-alone model; image missing, audio)")


if __name__ == "__main__":
    main()
