"""Training checkpoints in one safetensors file: tensors plus a JSON record in its metadata.

Nothing is pickled, so loading a checkpoint cannot run code. The file is written to a temporary name and
renamed into place, so a reader (or a resumed run) only ever sees a whole checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from crossfuse.errors import DataError
from crossfuse.train.optimizer import AdamW

CHECKPOINT = "checkpoint.safetensors"


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                # a clone: the trainer's moments are views of one buffer, which safetensors refuses
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous().clone()
            else:
                plain[f"{index}.{name}"] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "plain": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], record: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in record["plain"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in record["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    directory: Path,
    modules: dict[str, torch.nn.Module | dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | AdamW,
    record: dict[str, Any],
) -> Path:
    """Write ``directory/checkpoint.safetensors`` atomically.

    ``modules`` maps a prefix to a module or a state dict; ``record`` is any JSON-serialisable progress
    (epoch, step, history, scheduler state). The torch random-number state is saved beside them.
    """
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        state = module.state_dict() if isinstance(module, torch.nn.Module) else module
        for key, value in state.items():
            tensors[f"{prefix}.{key}"] = value.detach().cpu().contiguous().clone()
    optimizer_tensors, optimizer_record = _flatten_optimizer(optimizer.state_dict())
    tensors.update(optimizer_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    metadata = {"record": json.dumps(record), "optimizer": json.dumps(optimizer_record)}
    path = directory / CHECKPOINT
    partial = directory / f".{CHECKPOINT}.partial"
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(path)
    return path


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Tensors, the progress record and the optimizer state dict of a checkpoint."""
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata()
        record = json.loads(metadata["record"])
        optimizer = _unflatten_optimizer(tensors, json.loads(metadata["optimizer"]))
    except Exception as error:
        raise DataError(
            f"{path}: not a readable crossfuse checkpoint ({error}); delete it to start over"
        ) from None
    return tensors, record, optimizer


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` under ``prefix.``, with the prefix removed."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
