"""Run by tests/test_distributed.py under ``torchrun``: a few training steps of every transfer method
with dropout on, saving the parameters (rank 0) so that 1 and 2 processes can be compared.

Usage: ``torchrun --nproc_per_node=N tests/distributed_steps.py OUT_DIR``.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from crossfuse.model import build_model
from crossfuse.train.distributed import distributed_context
from crossfuse.train.lifecycle import start_method
from crossfuse.train.loop import TrainSettings, train
from crossfuse.transfer import TRANSFERS

#: (fusion, transfer, options): every method that trains on batches, and early fusion (dropout inside the
#: fusion). MMD aligns the modalities here: on the fused space (a linear layer's output) it is blind to the
#: layer's bias, whose gradient is then rounding noise that Adam scales to steps of ``lr``, different in
#: each run, and a unit that never fires on the source can still fire on the target.
CASES = (
    [("late", name, {}) for name in ("source-only", "iw", "dann", "coral", "mixup")]
    + [
        ("late", "mmd", {"align": "modalities"}),
        ("early", "mixup", {}),
    ]
    + [
        ("late", name, {})
        for name in ("mcc", "cdan", "jan", "bnm", "vada", "mimicry", "correspondence", "m3sda", "shot")
    ]
    # IWDAN's class-share estimate, updated every second step so that six steps use it
    + [("late", "iwdan", {"update_every": 2})]
    # domain generalisation: two source domains (alternate rows), no target
    + [
        ("late", name, {})
        for name in ("erm", "coral-dg", "dann-dg", "mixup-dg", "vrex", "group-dro", "swa", "modality-dropout")
    ]
)


def toy_data(n: int = 96) -> tuple[dict, np.ndarray, dict]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    source = {
        "vec": (rng.normal(size=(n, 6)) + labels[:, None]).astype(np.float32),
        "seq": (rng.normal(size=(n, 7, 4)) + labels[:, None, None] * 0.5).astype(np.float32),
    }
    target = {m: (x + 1.0).astype(np.float32) for m, x in source.items()}
    return source, labels, target


def toy_model(fusion: str, transfer: str, options: dict, source, labels, target):
    """The seeded toy model and its started method; a domain-generalisation method gets two source
    domains (alternate rows), returned as the rows' domain index (``None`` otherwise)."""
    torch.manual_seed(0)
    model = build_model({"vec": (6,), "seq": (7, 4)}, 3, fusion, hidden_dim=16, dropout=0.3)
    method = TRANSFERS[transfer](**options)
    domains = (np.arange(len(labels)) % 2) if method.domain_generalization else None
    start_method(
        method,
        model,
        source,
        target,
        seed=0,
        n_source_domains=1 if domains is None else 2,
        source_labels=labels,
    )
    return model, method, domains


def main(out: Path) -> None:
    rank, _ = distributed_context()
    source, labels, target = toy_data()
    for fusion, transfer, options in CASES:
        model, method, domains = toy_model(fusion, transfer, options, source, labels, target)
        with torch.no_grad():
            inputs = {m: torch.from_numpy(np.concatenate([source[m], target[m]])) for m in source}
            initial_logits = model.eval()(inputs)
        settings = TrainSettings(epochs=1, batch_size=16, min_steps_per_epoch=6, early_stopping=False)
        data = (source, labels)
        train(
            model, method, data, data, target, None, settings, 0, log=lambda _: None, source_domains=domains
        )
        if rank == 0:
            model.eval()
            with torch.no_grad():
                tensors = {"logits": model(inputs), "initial_logits": initial_logits}
            tensors |= {f"method.{k}": v for k, v in method.state_dict().items()}
            tensors |= {f"model.{k}": v for k, v in model.state_dict().items()}
            tensors = {k: v.contiguous() for k, v in tensors.items()}
            save_file(tensors, str(out / f"{fusion}-{transfer}.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
