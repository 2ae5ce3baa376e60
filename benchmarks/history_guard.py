"""Guard for refactors and speed work: short runs of every kind of method, their histories hashed.

Each combination trains for ``--epochs`` epochs on AV-Digits' default task (seed 0) in this process; the
script hashes every run's per-epoch history (losses, accuracies, selection scores; not timings) and its
final metrics. ``--save FILE`` writes the hashes; ``--compare FILE`` says, run by run, whether the code in
hand reproduces them to the bit, and exits 1 when one differs. Run it before a change that should not
move any number, then after:

    OMP_NUM_THREADS=1 python benchmarks/history_guard.py --save /tmp/guard.json
    OMP_NUM_THREADS=1 python benchmarks/history_guard.py --compare /tmp/guard.json

A change that adds a field to the history compares the rest with ``--ignore FIELD`` (the field is left
out of every epoch's record before hashing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

#: (fusion, transfer): one of each kind (source-only, adversarial, re-weighting, mixing, self-training,
#: moment matching, multimodal, domain generalisation, weight averaging), and the fusions with the most
#: arithmetic of their own.
COMBINATIONS = [
    ("late", "source-only"),
    ("late", "dann"),
    ("late", "iw"),
    ("late", "mixup"),
    ("late", "mcc"),
    ("late", "shot"),
    ("late", "correspondence"),
    ("late", "coral-dg"),
    ("late", "mixup-dg"),
    ("late", "m3sda"),
    ("late", "swa"),
    ("early", "dann"),
    ("lmf", "dann"),
    ("tfn", "mixup"),
]
TIMINGS = {"train_seconds", "seconds"}


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def run_all(epochs: int, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    from crossfuse.config import load_config
    from crossfuse.runner import run

    hashes = {}
    with tempfile.TemporaryDirectory() as folder:
        for fusion, transfer in COMBINATIONS:
            out = Path(folder) / f"{fusion}-{transfer}"
            config = load_config(None, {"fusion": fusion, "transfer": transfer, "epochs": epochs})
            run(config, out, log=lambda _: None)
            history = [
                {k: v for k, v in record.items() if k not in ignore}
                for record in json.loads((out / "history.json").read_text())
            ]
            metrics = json.loads((out / "metrics.json").read_text())
            kept = {k: v for k, v in metrics.items() if k not in TIMINGS and "accuracy" in k}
            hashes[f"{fusion}-{transfer}"] = digest([history, kept])
            print(f"{fusion}-{transfer}: {hashes[f'{fusion}-{transfer}']}", flush=True)
    return hashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ignore", action="append", default=[], help="a history field to leave out")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path)
    action.add_argument("--compare", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    hashes = run_all(args.epochs, tuple(args.ignore))
    if args.save:
        args.save.write_text(json.dumps(hashes, indent=1) + "\n")
        print(f"{len(hashes)} hashes written to {args.save}")
        return
    expected = json.loads(args.compare.read_text())
    changed = [name for name, value in hashes.items() if expected.get(name) != value]
    print(f"{len(hashes) - len(changed)} of {len(hashes)} runs reproduce {args.compare} to the bit")
    for name in changed:
        print(f"DIFFERS: {name}")
    sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
