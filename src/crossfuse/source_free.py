"""``crossfuse adapt``: SHOT's source-free phase from a finished run folder; only target data is read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import save_file

from crossfuse.data.folder import read_modalities
from crossfuse.errors import DataError
from crossfuse.predictor import MODEL_CARD, MODEL_WEIGHTS, load


def adapt_run(
    run: Path, data: Path, out: Path, epochs: int = 10, lr: float = 1e-3, seed: int = 0
) -> tuple[float | None, int]:
    """Adapt ``run``'s model to the rows of ``data`` with SHOT and write it to ``out`` (``model.json`` and
    ``model.safetensors``, so ``crossfuse predict`` and ``crossfuse.load`` use it). Returns the accuracy
    on ``data``'s labelled rows (``None`` without labels) and the number of rows."""
    import numpy as np
    import torch

    from crossfuse.prediction_table import predict_folder
    from crossfuse.transfer.shot import SHOT

    model = load(run)
    if model.objective == "regression":
        raise DataError(f"{run}: SHOT adapts classifiers; this run is a regression")
    inputs, _ = read_modalities(data)
    prepared = model.prepare(inputs)
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds code that draws from numpy's global generator
    SHOT(epochs=epochs).adapt(model.model, prepared, lr, seed)
    out.mkdir(parents=True, exist_ok=True)
    card = json.loads((run / MODEL_CARD).read_text()) | {"adapted_from": str(run), "adapted_with": "shot"}
    (out / MODEL_CARD).write_text(json.dumps(card, indent=2))
    state = {k: v.contiguous() for k, v in model.model.state_dict().items()}
    save_file(state, str(out / f".{MODEL_WEIGHTS}.partial"))
    (out / f".{MODEL_WEIGHTS}.partial").replace(out / MODEL_WEIGHTS)
    if (run / "config.yaml").exists():
        shutil.copy(run / "config.yaml", out / "config.yaml")
    accuracy, n = predict_folder(load(out), data, out / "predictions.csv")
    return accuracy, n
