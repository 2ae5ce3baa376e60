"""``crossfuse adapt``: source-free adaptation of a finished run's model; only target data is read.

Two steps, alone or in turn (``ADAPTATIONS``):

- ``standardize``: the model's input standardisation re-fitted on the target rows, each modality keeping
  the kind of statistics it had (per feature, or one scale), so that the target reaches the encoders
  standardised by its own moments as the source did by its own: per-domain standardisation
  (``--normalization domain``) after the fact, AdaBN's idea at the input (Li et al., "Revisiting Batch
  Normalization For Practical Domain Adaptation", 2016). No training; a regression takes it too.
- ``shot``: SHOT's source-free phase (:class:`~crossfuse.transfer.shot.SHOT`), classifiers only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from crossfuse.data.folder import read_modalities
from crossfuse.errors import ConfigError, DataError
from crossfuse.predictor import MODEL_CARD, MODEL_WEIGHTS, load

#: ``crossfuse adapt --method`` choices: the steps each runs, in order.
ADAPTATIONS = {
    "shot": ("shot",),
    "standardize": ("standardize",),
    "standardize+shot": ("standardize", "shot"),
}


def restandardize(model: torch.nn.Module, inputs: Mapping[str, np.ndarray], where: str) -> list[str]:
    """Re-fit each :class:`~crossfuse.normalize.Standardize` of ``model`` on the rows of ``inputs`` that
    have its modality, keeping its kind; the names of the modalities re-fitted. A modality standardised
    with ``'none'`` (the identity) or by a user's own module is left as it is."""
    from crossfuse.data.missing import present_rows
    from crossfuse.normalize import Standardize

    refitted = []
    for m, normalizer in model.normalizers.items():
        if not isinstance(normalizer, Standardize) or normalizer.kind == "none" or m not in inputs:
            continue
        rows = present_rows(inputs[m])
        if len(rows) < 2:
            raise DataError(
                f"{where}: modality {m!r} is in {len(rows)} row(s); standardising it by the target's own "
                "statistics needs at least 2"
            )
        normalizer.refit(rows)
        refitted.append(m)
    return refitted


def adapt_run(
    run: Path,
    data: Path,
    out: Path,
    epochs: int = 10,
    lr: float = 1e-3,
    seed: int = 0,
    method: str = "shot",
) -> tuple[float | None, int]:
    """Adapt ``run``'s model to the rows of ``data`` with ``method`` (a key of :data:`ADAPTATIONS`) and
    write it to ``out`` (``model.json`` and ``model.safetensors``, so ``crossfuse predict`` and
    ``crossfuse.load`` use it). Returns the accuracy on ``data``'s labelled rows (``None`` without labels;
    for a regression, its mean absolute error) and the number of rows."""
    from crossfuse.prediction_table import predict_folder
    from crossfuse.transfer.shot import SHOT

    if method not in ADAPTATIONS:
        raise ConfigError(f"method {method!r}: unknown (choose from {', '.join(ADAPTATIONS)})")
    model = load(run)
    if "shot" in ADAPTATIONS[method] and model.objective == "regression":
        raise DataError(
            f"{run}: SHOT adapts classifiers; this run is a regression (use --method standardize)"
        )
    inputs, _ = read_modalities(data)
    prepared = model.prepare(inputs)
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds code that draws from numpy's global generator
    for step in ADAPTATIONS[method]:
        if step == "standardize":
            restandardize(model.model, prepared, str(data))
        else:
            SHOT(epochs=epochs).adapt(model.model, prepared, lr, seed)
    out.mkdir(parents=True, exist_ok=True)
    card = json.loads((run / MODEL_CARD).read_text()) | {"adapted_from": str(run), "adapted_with": method}
    (out / MODEL_CARD).write_text(json.dumps(card, indent=2))
    state = {k: v.contiguous() for k, v in model.model.state_dict().items()}
    save_file(state, str(out / f".{MODEL_WEIGHTS}.partial"))
    (out / f".{MODEL_WEIGHTS}.partial").replace(out / MODEL_WEIGHTS)
    if (run / "config.yaml").exists():
        shutil.copy(run / "config.yaml", out / "config.yaml")
    accuracy, n = predict_folder(load(out), data, out / "predictions.csv")
    return accuracy, n
