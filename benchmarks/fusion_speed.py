"""Forward + backward time of LowRankFusion against a reference LMF and TensorFusion, on one thread.

The reference is written here from the formula in the layout of the LMF authors and MultiBench:
factors of shape (rank, d_m + 1, d_y), ``[1; z_m]`` built with a concatenation, one batched matmul per
modality giving (rank, batch, d_y), the product over modalities, then the rank weights as a (1, rank)
matmul and the bias. Both modules get the same parameters and are checked to agree before timing.

    OMP_NUM_THREADS=1 python benchmarks/fusion_speed.py

Prints a markdown table: milliseconds per forward+backward (median of repeats), LowRankFusion's speed-up
over the reference and over TensorFusion, and the share of this CPU's single-thread sgemm rate that
LowRankFusion's matrix products reach.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

from crossfuse.fusion import LowRankFusion, TensorFusion

SIZES = [
    # (batch, dims, rank, d_y)
    (256, (32, 32, 128), 32, 128),
    (256, (16, 16, 16), 4, 32),
    (512, (64, 64), 16, 64),
    (128, (32, 32, 32, 32), 8, 64),
]


class ReferenceLMF(nn.Module):
    """LMF as the authors and MultiBench lay it out (all parameters registered here, unlike theirs)."""

    def __init__(self, ours: LowRankFusion) -> None:
        super().__init__()
        self.factors = nn.ParameterList(
            nn.Parameter(f.detach().permute(1, 0, 2).contiguous()) for f in ours.factors
        )
        self.rank_weights = nn.Parameter(ours.rank_weights.detach().clone()[None])
        self.bias = nn.Parameter(ours.bias.detach().clone()[None])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        product = None
        for z, factor in zip(features, self.factors, strict=True):
            augmented = torch.cat([torch.ones(z.shape[0], 1, dtype=z.dtype), z], dim=1)
            fused = torch.matmul(augmented, factor)  # (rank, batch, d_y)
            product = fused if product is None else product * fused
        return torch.matmul(self.rank_weights, product.permute(1, 0, 2)).squeeze(1) + self.bias


def median_ms(step, repeats: int) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1000 * times[len(times) // 2]


def forward_backward(module: nn.Module, inputs):
    def step() -> None:
        module.zero_grad(set_to_none=True)
        module(inputs).sum().backward()

    return step


def sgemm_gflops(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    ms = median_ms(lambda: torch.mm(a, b), repeats)
    return 2 * n**3 / (ms / 1000) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    peak = sgemm_gflops()
    print(f"single-thread sgemm (1024^3): {peak:.1f} GFLOP/s; torch {torch.__version__}, 1 thread\n")
    print(
        "| batch | dims | rank | d_y | LowRankFusion ms | reference LMF ms | TensorFusion ms | "
        "speed-up vs reference | speed-up vs TFN | LMF share of sgemm |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for batch, dims, rank, d_y in SIZES:
        names = [f"m{i}" for i in range(len(dims))]
        input_dims = dict(zip(names, dims, strict=True))
        ours = LowRankFusion(input_dims, d_y, rank=rank)
        reference = ReferenceLMF(ours)
        inputs = {m: torch.randn(batch, d, requires_grad=True) for m, d in input_dims.items()}
        ordered = [inputs[m] for m in names]
        difference = (ours(inputs) - reference(ordered)).abs().max().item()
        assert difference < 1e-3, f"reference disagrees with LowRankFusion by {difference}"
        tensor_size = math.prod(d + 1 for d in dims)
        tfn = TensorFusion(input_dims, d_y)

        lmf_ms = median_ms(forward_backward(ours, inputs), args.repeats)
        ref_ms = median_ms(forward_backward(reference, ordered), args.repeats)
        tfn_ms = median_ms(forward_backward(tfn, inputs), max(3, args.repeats // 4))
        # Matmul FLOPs of LowRankFusion: forward z_m (batch x d_m) @ (d_m x rank*d_y) per modality,
        # backward two products of the same size (grad of weights, grad of inputs).
        flops = sum(3 * 2 * batch * d * rank * d_y for d in dims)
        share = flops / (lmf_ms / 1000) / 1e9 / peak
        print(
            f"| {batch} | {dims} | {rank} | {d_y} | {lmf_ms:.2f} | {ref_ms:.2f} | {tfn_ms:.1f} | "
            f"{ref_ms / lmf_ms:.2f}x | {tfn_ms / lmf_ms:.0f}x | {100 * share:.0f}% |"
        )
        del tfn
        assert tensor_size > 0


if __name__ == "__main__":
    main()
