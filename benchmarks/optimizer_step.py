"""Time of one AdamW step on one thread: the flat loop (eight passes) against torch's fused kernel.

The trainer's AdamW (``crossfuse.train.optimizer``) steps a CPU model's weights as one flat buffer: below
``FUSED_MIN_ELEMENTS`` weights with eight elementwise operations, equal to the bit to
``torch.optim.AdamW``'s single-tensor path; from there up with torch's fused kernel, one pass over the
buffers. This script times both steps on a linear layer of each size (median of ``--repeats``, random
gradients) and prints how far apart their weights are after the timed steps.

    OMP_NUM_THREADS=1 python benchmarks/optimizer_step.py
"""

from __future__ import annotations

import argparse
import time

import torch

from crossfuse.train.optimizer import FUSED_MIN_ELEMENTS, AdamW

#: (inputs, outputs) of the linear layer: AV-Digits-sized, the threshold's order, a 5,000-word and a
#: 20,000-word bag of words under 256 units.
SIZES = [(512, 64), (1024, 1024), (5000, 256), (20000, 256)]


def step_times(layer: torch.nn.Linear, step_name: str, grads: list[torch.Tensor], repeats: int):
    optimizer = AdamW(layer.parameters(), lr=1e-3, weight_decay=1e-2, flat=True)
    step = getattr(optimizer, step_name)
    times = []
    for k in range(repeats):
        layer.weight.grad, layer.bias.grad = grads[k % len(grads)], torch.ones_like(layer.bias)
        optimizer.common_step += 1  # what AdamW.step counts before it picks a kernel
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"fused from {FUSED_MIN_ELEMENTS:,} weights; torch {torch.__version__}, 1 thread\n")
    print("| weights | flat loop ms | fused ms | speed-up | largest weight difference after the steps |")
    print("| --- | --- | --- | --- | --- |")
    for inputs, outputs in SIZES:
        torch.manual_seed(0)
        start = torch.nn.Linear(inputs, outputs)
        grads = [torch.randn(outputs, inputs) * 1e-3 for _ in range(4)]
        results = {}
        for step_name in ("step_flat", "step_fused"):
            layer = torch.nn.Linear(inputs, outputs)
            layer.load_state_dict(start.state_dict())
            results[step_name] = (step_times(layer, step_name, grads, args.repeats), layer.weight.detach())
        (loop_ms, loop_weight), (fused_ms, fused_weight) = results["step_flat"], results["step_fused"]
        difference = (loop_weight - fused_weight).abs().max().item()
        weights = inputs * outputs + outputs
        speed_up = loop_ms / fused_ms
        print(f"| {weights:,} | {loop_ms:.2f} | {fused_ms:.2f} | {speed_up:.1f}x | {difference:.1e} |")


if __name__ == "__main__":
    main()
