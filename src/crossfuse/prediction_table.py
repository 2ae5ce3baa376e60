"""``crossfuse predict``: a trained model over a data folder, one CSV row a sample."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from crossfuse.data.folder import as_domain_names, column_as_vector, load_array, read_modalities
from crossfuse.errors import ConfigError, DataError
from crossfuse.predictor import TrainedModel


def _label_values(path: Path, n: int) -> np.ndarray:
    """The raw labels of a prediction folder as comparable Python values (``None`` where missing)."""
    raw = column_as_vector(load_array(path))
    if raw.shape != (n,):
        raise DataError(f"{path}: expected shape ({n},) to match the modalities, found {raw.shape}")
    if raw.dtype.kind in "US":
        return np.array([v if v != "" else None for v in raw.astype(str)], dtype=object)
    if raw.dtype.kind in "iub" or (raw.dtype.kind == "f" and np.all(raw == np.round(raw))):
        return np.array([int(v) if int(v) != -1 else None for v in raw], dtype=object)
    raise DataError(f"{path}: labels must be integers or strings, found dtype {raw.dtype}")


def predict_folder(model: TrainedModel, folder: str | Path, out: str | Path) -> tuple[float | None, int]:
    """Write ``out`` (CSV) with a ``prediction`` column in the training label values and a ``p_<class>``
    column a class, one row a sample in the folder's order (plus ``domain`` and ``label`` when the folder
    has them). Return the accuracy over the rows with a label (``None`` without labels) and the row count.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (it needs modalities/<name>.npy)")
    inputs, _ = read_modalities(root)
    if model.objective == "regression":
        return predict_values(model, root, inputs, Path(out))
    probabilities = model.predict_proba(inputs)
    n = len(probabilities)
    predictions = np.array(model.classes, dtype=object)[probabilities.argmax(1)]
    columns: dict[str, list] = {"row": list(range(n))}
    if (root / "domains.npy").exists():
        domains = as_domain_names(load_array(root / "domains.npy"), root / "domains.npy")
        if domains.shape != (n,):
            raise DataError(f"{root / 'domains.npy'}: expected shape ({n},), found {domains.shape}")
        columns["domain"] = domains.tolist()
    accuracy = None
    if (root / "labels.npy").exists():
        labels = _label_values(root / "labels.npy", n)
        known = np.array([v is not None for v in labels])
        columns["label"] = ["" if v is None else v for v in labels]
        if known.any():
            accuracy = float(
                np.mean([p == y for p, y in zip(predictions[known], labels[known], strict=True)])
            )
    columns["prediction"] = predictions.tolist()
    for c, name in enumerate(model.classes):
        columns[f"p_{name}"] = [f"{p:.6f}" for p in probabilities[:, c]]
    write_table(Path(out), columns)
    return accuracy, n


def predict_values(model: TrainedModel, root: Path, inputs: dict, out: Path) -> tuple[float | None, int]:
    """A regression's table: ``row``, ``domain`` and ``label`` when present, the predicted ``prediction``
    (with ``k`` targets: ``label_j`` and ``prediction_j``, ``j = 0 .. k-1``); returns the mean absolute
    error over the rows with a target (its mean over the targets; ``None`` without targets)."""
    values = model.predict(inputs)
    n = len(values)
    several = values.ndim == 2
    columns: dict[str, list] = {"row": list(range(n))}
    if (root / "domains.npy").exists():
        columns["domain"] = as_domain_names(load_array(root / "domains.npy"), root / "domains.npy").tolist()
    error = None
    if (root / "labels.npy").exists():
        targets = column_as_vector(load_array(root / "labels.npy")).astype(np.float64)
        if targets.shape != values.shape:
            raise DataError(f"{root / 'labels.npy'}: expected shape {values.shape}, found {targets.shape}")
        for j, column in enumerate(targets.T if several else [targets]):
            columns[f"label_{j}" if several else "label"] = ["" if np.isnan(v) else v for v in column]
        known = ~np.isnan(targets).any(1) if several else ~np.isnan(targets)
        error = float(np.abs(values[known] - targets[known]).mean()) if known.any() else None
    for j, column in enumerate(values.T if several else [values]):
        columns[f"prediction_{j}" if several else "prediction"] = [f"{v:.6g}" for v in column]
    write_table(out, columns)
    return error, n


def write_table(out: Path, columns: dict[str, list]) -> None:
    if out.is_dir():
        raise ConfigError(
            f"{out}: is a folder; --out takes the table's file name, e.g. {out / 'predictions.csv'}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))
    partial.replace(out)
