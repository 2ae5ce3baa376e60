"""Which input normalisation to use by default: per feature, one global scale, or ``auto``.

Source-only late fusion with default settings on folders of different kinds of vector input, each
normalisation in turn, seeds 0-2; prints target accuracy (label-free selection) as mean ± std:

- digits halves: 8x8 digits split into two 32-pixel halves (integers 0-16, constant border pixels),
  target rotated 10 degrees with noise (``benchmarks/digits_halves.py``);
- USPS -> MNIST: 16x16 digits in [0, 1] flattened to 256-pixel vectors, 2,000 of each (needs the data
  mirror, ``CROSSFUSE_DATA``);
- two moons: dense 2-d real features, target rotated 35 degrees (``benchmarks/two_moons.py``);
- bag of words: synthetic sparse word counts, 5,000 words, 0.75% nonzero, books -> kitchen
  (``benchmarks/bag_of_words.py``).

    python benchmarks/normalization.py --seeds 0 1 2 --out runs/normalization
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bag_of_words import write_corpus  # noqa: E402
from digits_halves import write_digits_halves  # noqa: E402
from two_moons import write_two_moons  # noqa: E402

MODES = ["feature", "global", "auto"]


def write_usps_mnist(root: Path, per_domain: int = 2000, seed: int = 0) -> Path:
    """The folder of :func:`crossfuse.data.public.usps_mnist`: one modality ``pixels`` (N, 256) in [0, 1],
    USPS (source) and MNIST's test set (target)."""
    from crossfuse.data.public import usps_mnist, write_folder

    write_folder(usps_mnist(per_domain, seed), root)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/normalization"))
    args = parser.parse_args()
    from crossfuse.config import load_config
    from crossfuse.errors import DataError
    from crossfuse.runner import run_experiment

    folders = {
        "digits halves": (write_digits_halves(args.out / "digits-halves"), "original", "rotated"),
        "two moons": (write_two_moons(args.out / "two-moons"), "source", "target"),
        "bag of words": (write_corpus(args.out / "bag-of-words"), "books", "kitchen"),
    }
    try:
        folders["USPS -> MNIST"] = (write_usps_mnist(args.out / "usps-mnist"), "usps", "mnist")
    except DataError as error:
        print(f"USPS -> MNIST left out: {error}")
    print(f"source-only late fusion, seeds {args.seeds}: target accuracy (%), label-free selection")
    print("| data set | " + " | ".join(MODES) + " | auto chose |")
    print("| --- |" + " --- |" * (len(MODES) + 1))
    for name, (folder, source, target) in folders.items():
        cells, chosen = [], ""
        for mode in MODES:
            values = []
            for seed in args.seeds:
                settings = dict(data=str(folder), source=[source], target=[target], seed=seed)
                config = load_config(None, settings | {"normalization": mode})
                values.append(
                    run_experiment(
                        config, args.out / "runs" / f"{folder.name}-{mode}-{seed}", log=lambda line: None
                    )["target_accuracy"]
                )
            cells.append(f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}")
            if mode == "auto":
                import json

                card = json.loads(
                    (args.out / "runs" / f"{folder.name}-{mode}-{args.seeds[0]}" / "model.json").read_text()
                )
                chosen = ", ".join(sorted({m["normalization"] for m in card["modalities"].values()}))
        print(f"| {name} | " + " | ".join(cells) + f" | {chosen} |", flush=True)


if __name__ == "__main__":
    main()
