"""How much does crossfuse's trainer cost over a bare PyTorch loop on the same work?

Both train the default model (late fusion) of AV-Digits' default task, source-only, for the same epochs,
on the same batches (the trainer's seeded epoch plans), with the same optimiser (AdamW) and learning-rate
schedule (cosine). The bare loop is what a user would write by hand: index the rows, forward,
cross-entropy, backward, step. The trainer adds what a run needs: the method's loss hook, the divergence
check, the per-epoch scoring of the source-validation rows for model selection, keeping the best weights.
Each is timed ``--repeats`` times, alternating, in this process; the script prints the best of each and
the trainer's overhead against the 10% target.

    OMP_NUM_THREADS=1 python benchmarks/trainer_overhead.py --epochs 5 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F


def build(seed: int):
    from crossfuse.config import load_config
    from crossfuse.runner import build as build_run

    return build_run(load_config(None, {"transfer": "source-only", "seed": seed}), log=lambda _: None)


def trainer_seconds(epochs: int, seed: int) -> float:
    from crossfuse.train.loop import Trainer

    run = build(seed)
    labels, split = run.dataset.labels, run.split
    settings = run.config.train_settings()
    settings.epochs, settings.early_stopping = epochs, False
    trainer = Trainer(
        run.model, run.method, (run.rows(split.source_train), labels[split.source_train]),
        (run.rows(split.source_val), labels[split.source_val]), run.rows(split.target_train), None,
        settings, seed=seed, log=lambda _: None, criterion=run.criterion,
    )  # fmt: skip
    started = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - started


def bare_seconds(epochs: int, seed: int) -> float:
    from crossfuse.train.loop import epoch_plan

    run = build(seed)
    labels, split = run.dataset.labels, run.split
    settings = run.config.train_settings()
    inputs = {m: torch.from_numpy(x) for m, x in run.rows(split.source_train).items()}
    targets = torch.from_numpy(labels[split.source_train])
    n = len(targets)
    batch = min(settings.batch_size, n // 4)
    steps = max(math.ceil(n / batch), settings.min_steps_per_epoch)
    model = run.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=steps * epochs, eta_min=settings.lr / 20
    )
    model.train()
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        plan = epoch_plan(n, batch, steps, seed, epoch, 0)
        for rows in plan:
            loss = F.cross_entropy(model({m: x[rows] for m, x in inputs.items()}), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    build(args.seed)  # features cached, modules imported: neither side pays for them
    trainer, bare = [], []
    for _ in range(args.repeats):
        bare.append(bare_seconds(args.epochs, args.seed))
        trainer.append(trainer_seconds(args.epochs, args.seed))
    best_trainer, best_bare = min(trainer), min(bare)
    overhead = best_trainer / best_bare - 1
    print(f"AV-Digits default task, late fusion, source-only, {args.epochs} epochs, best of {args.repeats}")
    print("| loop | seconds (runs) |\n| --- | --- |")
    print(f"| bare PyTorch | {best_bare:.2f} ({', '.join(f'{t:.2f}' for t in bare)}) |")
    print(f"| crossfuse Trainer | {best_trainer:.2f} ({', '.join(f'{t:.2f}' for t in trainer)}) |")
    verdict = "within" if overhead <= 0.10 else "OVER"
    print(f"trainer overhead {100 * overhead:+.1f}% ({verdict} the 10% target)")


if __name__ == "__main__":
    main()
