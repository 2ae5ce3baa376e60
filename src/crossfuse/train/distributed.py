"""Process-group set-up for ``torchrun``: gloo on CPU, nccl when every process has a GPU."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def distributed_context() -> tuple[int, int]:
    """``(rank, world_size)``; joins the process group that ``torchrun`` describes in the environment.

    torchrun sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; its rendezvous options
    (``--nnodes``, ``--rdzv-endpoint``) extend the same group across machines with nothing else needed.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()
