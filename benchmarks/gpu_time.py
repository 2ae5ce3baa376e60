"""A run on a GPU: training time, how busy the GPU is, larger batches, and torch.compile.

AV-Digits default task, late fusion, DANN, on ``--device`` (``cuda`` by default; ``cpu`` checks the
script itself). For each ``--batch-sizes``: a full ``--epochs`` run's ``train_seconds`` and target
accuracy (label-free selection). Then a profile of ``--profile-epochs`` epochs at the first batch size:
the share of the wall time during which a GPU kernel runs (kernel time summed from the PyTorch profiler's
device events, over the wall time of the profiled training). ``--compile`` instead times the full run at
the first batch size with the model's encoders, fusion and head under ``torch.compile`` (compilation
included).

    python benchmarks/gpu_time.py --epochs 40 --batch-sizes 64 256
    python benchmarks/gpu_time.py --epochs 40 --compile
"""

from __future__ import annotations

import argparse
import time

import torch


def build(device: str, epochs: int, batch_size: int, seed: int):
    from crossfuse.config import load_config
    from crossfuse.runner import build as build_run

    settings = {"transfer": "dann", "epochs": epochs, "batch_size": batch_size, "seed": seed}
    return build_run(load_config(None, settings | {"device": device}), log=lambda _: None)


def timed_run(device: str, epochs: int, batch_size: int, seed: int, compile_model: bool = False):
    from crossfuse.runner import evaluate, trainer

    run = build(device, epochs, batch_size, seed)
    fitted = trainer(run, log=lambda _: None)
    if compile_model:
        # the encoders, fusion and head: the transfer method's loss reads the training progress, a float
        # that changes every step, which torch.compile would specialise on and compile again each step
        for module in [*run.model.encoders.values(), run.model.fusion, run.model.head]:
            module.compile()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    result = fitted.fit()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return result.train_seconds, evaluate(run, result, log=lambda _: None).target_accuracy


def kernel_share(device: str, epochs: int, batch_size: int, seed: int) -> tuple[float, float]:
    """Seconds of wall time of ``epochs`` epochs of training, and the share of it with a kernel running."""
    from torch.profiler import ProfilerActivity, profile

    from crossfuse.runner import trainer

    fitted = trainer(build(device, epochs, batch_size, seed), log=lambda _: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        fitted.fit()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
    kernel_us = sum(
        event.time_range.elapsed_us()
        for event in prof.events()
        if event.device_type == torch.autograd.DeviceType.CUDA
    )
    return wall, kernel_us / 1e6 / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile-epochs", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"{name}, torch {torch.__version__}; AV-Digits default task, late fusion, DANN, seed {args.seed}")
    timed_run(args.device, 1, args.batch_sizes[0], args.seed)  # warm-up: CUDA context, kernels, caches
    if args.compile:
        seconds, accuracy = timed_run(args.device, args.epochs, args.batch_sizes[0], args.seed, True)
        print(
            f"torch.compile, batch {args.batch_sizes[0]}: train_seconds {seconds:.2f} (compilation "
            f"included), target accuracy {accuracy:.4f}"
        )
        return
    print("| batch size | epochs | train_seconds | target accuracy |\n| --- | --- | --- | --- |")
    for batch_size in args.batch_sizes:
        seconds, accuracy = timed_run(args.device, args.epochs, batch_size, args.seed)
        print(f"| {batch_size} | {args.epochs} | {seconds:.2f} | {accuracy:.4f} |", flush=True)
    wall, share = kernel_share(args.device, args.profile_epochs, args.batch_sizes[0], args.seed)
    print(
        f"\nprofiled {args.profile_epochs} epochs at batch {args.batch_sizes[0]}: {wall:.2f} s of wall time, "
        f"a kernel running {100 * share:.0f}% of it"
    )


if __name__ == "__main__":
    main()
