"""Where the time of one ``crossfuse run`` goes: start-up, data, training, evaluation, writing.

Two measurements, both on AV-Digits' default task with a warm feature cache (a first run fills it):

1. ``crossfuse run`` as a user runs it, in its own process, ``--repeats`` times: wall time, the run's own
   ``train_seconds``, and the start-up overhead, their difference (the issue's measure);
2. the same run in this process, phase by phase: importing ``crossfuse.runner`` (torch), building it
   (data, split, model, method, criteria), training, evaluation and writing the run folder; and which
   heavy modules the run imported (scikit-learn, scipy, matplotlib and torch's compiler stack should not
   be among them).

    OMP_NUM_THREADS=1 python benchmarks/run_time.py --epochs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command_line_run(epochs: int, out: Path) -> tuple[float, float]:
    """Wall seconds of ``crossfuse run`` in a fresh process, and its ``train_seconds``."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "crossfuse", "run", "--epochs", str(epochs), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    return wall, json.loads((out / "metrics.json").read_text())["train_seconds"]


def phases(epochs: int, out: Path) -> dict[str, float]:
    times = {}
    started = time.perf_counter()
    import torch  # noqa: F401  (timed: what every run imports)

    from crossfuse import runner
    from crossfuse.config import load_config
    from crossfuse.predictor import model_card
    from crossfuse.run_folder import write_run_folder

    times["imports"] = time.perf_counter() - started
    config = load_config(None, {"epochs": epochs})
    started = time.perf_counter()
    built = runner.build(config, log=lambda _: None)
    times["data, model, method"] = time.perf_counter() - started
    started = time.perf_counter()
    trained = runner.fit(built, None, log=lambda _: None)
    times["training"] = time.perf_counter() - started
    started = time.perf_counter()
    result = runner.evaluate(built, trained, log=lambda _: None)
    times["evaluation"] = time.perf_counter() - started
    started = time.perf_counter()
    card = model_card(built.config, built.dataset, built.model)
    write_run_folder(out, built.config, result.metrics(), trained.history, built.model, card)
    times["writing"] = time.perf_counter() - started
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        command_line_run(1, root / "warm-up")  # fills the feature cache
        print(f"AV-Digits default task, late fusion, source-only, {args.epochs} epochs, warm feature cache")
        overheads = []
        for k in range(args.repeats):
            wall, train = command_line_run(args.epochs, root / f"run{k}")
            overheads.append(wall - train)
            print(
                f"crossfuse run: wall {wall:.2f} s, train_seconds {train:.2f} s, overhead {wall - train:.2f}"
            )
        print(
            f"start-up overhead (wall - train_seconds) over {args.repeats} runs: median "
            f"{statistics.median(overheads):.2f} s, min {min(overheads):.2f}, max {max(overheads):.2f}\n"
        )
        measured = phases(args.epochs, root / "phases")
    print("| phase (one process) | seconds |\n| --- | --- |")
    for name, seconds in measured.items():
        print(f"| {name} | {seconds:.2f} |")
    heavy = ["sklearn", "scipy", "matplotlib", "torch._dynamo"]
    print(
        "\nimported by the run:",
        ", ".join(m for m in heavy if m in sys.modules) or "none of " + ", ".join(heavy),
    )


if __name__ == "__main__":
    main()
