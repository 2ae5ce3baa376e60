"""Using a trained model: load a run folder without its training data, predict, export for serving.

A finished run folder holds ``model.safetensors`` (every weight and the inputs' normalisation) and
``model.json`` (modality names, sample shapes and layouts, class values, the model's settings), which is
all :func:`load` needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfuse.errors import DataError

MODEL_CARD = "model.json"
MODEL_WEIGHTS = "model.safetensors"
CARD_FORMAT = 1


def model_card(config, dataset, model) -> dict[str, Any]:
    """What :func:`load` needs besides the weights: the model's settings, its inputs and its classes."""
    return {
        "format": CARD_FORMAT,
        "fusion": config.fusion,
        "hidden_dim": config.hidden_dim,
        "dropout": config.dropout,
        "fusion_options": config.fusion_options,
        "normalization": config.normalization,
        "transfer": config.transfer,
        "modalities": {
            m: {
                "shape": list(x.shape[1:]),
                "dtype": "float32",
                "layout": dataset.layouts.get(m, "channels_first" if x.ndim == 4 else "plain"),
                "normalization": model.normalizers[m].kind,
            }
            | indicator_entry(model.normalizers[m])
            for m, x in sorted(dataset.modalities.items())
        },
        "classes": dataset.classes if dataset.objective == "classification" else [],
        "objective": dataset.objective,
        "regression_loss": config.regression_loss,
        # the share of the targets' range a prediction may go beyond it; None: not clipped (and for every
        # model saved before clipping, whose card lacks it)
        "regression_margin": getattr(model.objective, "margin", None),
        "n_targets": dataset.n_targets,
        "modality_dropout": config.modality_dropout,
        # the modalities with a learned placeholder for the samples that lack them
        "placeholders": sorted(model.placeholders),
    }


def indicator_entry(normalizer: nn.Module) -> dict[str, list[int]]:
    """``{"missing_indicators": features}`` for a card when ``normalizer`` has indicator columns, else
    nothing (the cards of models without them stay as they were)."""
    features = list(getattr(normalizer, "indicators", ()))
    return {"missing_indicators": features} if features else {}


def fills_in(model: nn.Module, modality: str) -> bool:
    """Whether ``model`` fills in a missing value (a NaN in part of a sample) of ``modality``: its input
    standardisation keeps the training means (:class:`~crossfuse.normalize.Standardize`, not ``'none'``)."""
    from crossfuse.normalize import Standardize

    normalizers = getattr(model, "normalizers", {})
    normalizer = normalizers[modality] if modality in normalizers else None
    return isinstance(normalizer, Standardize) and normalizer.mode != "none"


class TrainedModel:
    """A trained crossfuse model and what it takes: ``predict`` / ``predict_proba`` on a dict of arrays.

    Inputs are ``{modality: array}`` with the samples on the first axis, in any numeric dtype; images may
    be given channels last when the training folder gave them so. A modality may be left out, or a
    sample may lack it (every value NaN), when the model has a placeholder for it (trained with modality
    dropout, or on samples that lacked it); otherwise a missing modality, a sample shape that does not
    match, or a sample whose values are all NaN is refused with one line naming the modality. A NaN in
    part of a sample is a missing value, which the model fills in with its feature's training mean.
    """

    def __init__(self, model: nn.Module, card: dict[str, Any], where: str = "model") -> None:
        self.model = model.eval()
        self.card = card
        self.where = where
        self.classes = list(card["classes"])
        self.objective = card.get("objective", "classification")
        #: How many values a regression predicts a sample (1 for a classifier).
        self.n_targets = int(card.get("n_targets", 1))
        self.modalities = {m: tuple(spec["shape"]) for m, spec in card["modalities"].items()}

    def prepare(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check and convert ``inputs`` to what the model takes: float32, channels first. ``inputs`` is a
        dict of arrays, one per modality; a model of one modality also takes its array alone."""
        from crossfuse.data.folder import check_modality, to_channels_first

        if not isinstance(inputs, Mapping):
            if len(self.modalities) == 1 and inputs is not None and not isinstance(inputs, str):
                inputs = {next(iter(self.modalities)): inputs}
            else:
                raise DataError(
                    f"{self.where}: inputs: a dict of arrays, one per modality "
                    f"({', '.join(sorted(self.modalities))}); got {type(inputs).__name__}"
                )

        missing = sorted(set(self.modalities) - set(inputs))
        optional = set(self.model.placeholders)
        if missing and (set(missing) - optional or len(missing) == len(self.modalities)):
            required = sorted(set(missing) - optional) or missing
            reason = (
                "the model was trained without --modality-dropout, so it needs every modality"
                if not optional
                else "at least one modality is needed"
            )
            raise DataError(
                f"{self.where}: modality {required[0]!r} is missing (the model takes "
                f"{', '.join(sorted(self.modalities))}; {reason})"
            )
        prepared, lengths = {}, set()
        for m, shape in sorted(self.modalities.items()):
            if m not in inputs:
                continue
            array = np.asarray(inputs[m])
            if array.shape == shape:
                array = array[None]
            if shape == (1,) and array.ndim == 1:  # one feature a sample, as a folder may give it
                array = array[:, None]
            if array.ndim == 4 and array.shape[1:] != shape and array.shape[1:] == (*shape[1:], shape[0]):
                array = to_channels_first(array)
            if array.shape[1:] != shape:
                raise DataError(
                    f"{self.where}: modality {m!r} has samples of shape {tuple(array.shape[1:])}, "
                    f"the model takes {shape}"
                )
            prepared[m] = check_modality(
                m, array, self.where, missing_allowed=m in optional, partial_allowed=fills_in(self.model, m)
            )
            lengths.add(len(array))
        if len(lengths) > 1:
            raise DataError(
                f"{self.where}: the modalities have different numbers of samples ({sorted(lengths)})"
            )
        return prepared

    def standardize_on(self, inputs: Mapping[str, Any]) -> list[str]:
        """Re-fit the model's input standardisation on the rows of ``inputs`` (another domain's, at least
        two rows a modality), each modality keeping its kind of statistics, so that later predictions
        standardise that domain by its own moments: ``crossfuse adapt --method standardize`` in memory.
        Returns the modalities re-fitted (not those standardised with ``'none'`` or by a module of the
        user's own)."""
        from crossfuse.source_free import restandardize

        return restandardize(self.model, self.prepare(inputs), self.where)

    def outputs(self, inputs: Mapping[str, Any], batch_size: int = 512) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``, or predicted values ``(N, 1)`` for a regression."""
        from crossfuse.train.loop import predict

        return predict(self.model, self.prepare(inputs), batch_size)[0]

    def predict_proba(self, inputs: Mapping[str, Any], batch_size: int = 512) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``, columns in the order of :attr:`classes`."""
        if self.objective == "regression":
            raise DataError(f"{self.where}: a regression model predicts values, not class probabilities")
        return self.outputs(inputs, batch_size)

    def predict(self, inputs: Mapping[str, Any], batch_size: int = 512) -> np.ndarray:
        """The most probable class of each sample, in the label values of the training data (the
        predicted value for a regression)."""
        if self.objective == "regression":
            values = self.outputs(inputs, batch_size)
            return values[:, 0] if values.shape[1] == 1 else values
        index = self.predict_proba(inputs, batch_size).argmax(1)
        return np.array(self.classes, dtype=object if isinstance(self.classes[0], str) else None)[index]

    def export(self, path: str | Path) -> Path:
        """Write a ``torch.export`` program that serves the model without crossfuse.

        Load it with ``torch.export.load(path).module()`` and call it with one float32 tensor a modality,
        in sorted modality order (:attr:`modalities`), channels first; it returns the class probabilities
        (the predicted values ``(N, k)`` for a regression of ``k`` targets).
        ``model.json`` beside the run names the classes.
        """
        names = sorted(self.modalities)
        wrapper = _PositionalModel(self.model, names).eval()
        examples = tuple(torch.zeros((2, *self.modalities[m])) for m in names)
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(
            wrapper, examples, dynamic_shapes=(tuple({0: batch} for _ in names),), strict=False
        )
        path = Path(path)
        torch.export.save(program, str(path))
        return path


class _PositionalModel(nn.Module):
    """Takes the modalities as positional tensors (what an exported program can take) and returns
    probabilities."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model.objective.predictions(self.model(dict(zip(self.names, tensors, strict=True))))


def load(run: str | Path) -> TrainedModel:
    """The trained model of a finished run folder; the training data is not needed.

    Raises
    ------
    DataError
        When the folder is not a finished run (no ``model.json`` or ``model.safetensors``) or its files
        do not match.
    """
    from safetensors.torch import load_file

    from crossfuse.model import build_model

    root = Path(run)
    card_path, weights_path = root / MODEL_CARD, root / MODEL_WEIGHTS
    for path in (card_path, weights_path):
        if not path.is_file():
            raise DataError(f"{path}: missing file (is {root} a finished crossfuse run folder?)")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{card_path}: not valid JSON ({error})") from None
    if card.get("format") != CARD_FORMAT:
        raise DataError(f"{card_path}: format {card.get('format')!r} is not one this crossfuse reads")
    if card.get("custom_model"):
        raise DataError(
            f"{root}: the model was built in Python (crossfuse.run(config, model=...)); build it the same "
            f"way and load {weights_path.name} into it with safetensors.torch.load_file"
        )
    model = build_model(
        {m: tuple(spec["shape"]) for m, spec in card["modalities"].items()},
        max(1, len(card["classes"])),
        card["fusion"],
        hidden_dim=card["hidden_dim"],
        dropout=card["dropout"],
        fusion_options=card["fusion_options"],
        normalization=card["normalization"],
        objective=card.get("objective", "classification"),
        regression_loss=card.get("regression_loss", "mse"),
        modality_dropout=card.get("modality_dropout", 0.0),
        missing_modalities=card.get("placeholders", []) if not card.get("modality_dropout") else (),
        n_targets=card.get("n_targets", 1),
        regression_margin=card.get("regression_margin"),
        missing_indicators={
            m: spec["missing_indicators"]
            for m, spec in card["modalities"].items()
            if spec.get("missing_indicators")
        },
    )
    try:
        model.load_state_dict(load_file(str(weights_path)))
    except Exception as error:
        first = str(error).strip().splitlines()[0]
        raise DataError(f"{weights_path}: does not match {card_path.name} ({first})") from None
    for m, spec in card["modalities"].items():
        # The statistics come with the weights; the kind they are of ('feature', 'global') with the card,
        # so that re-fitting them on other rows (crossfuse adapt --method standardize) keeps it.
        if "normalization" in spec and hasattr(model.normalizers[m], "kind"):
            model.normalizers[m].kind = spec["normalization"]
    return TrainedModel(model, card, where=str(root))
