"""Bring-your-own-data: a folder of ``.npy`` arrays, validated with one clear message per problem.

::

    PATH/modalities/<name>.npy   one array per modality, first axis = samples (any numeric dtype)
    PATH/labels.npy              (N,) integer class labels
    PATH/domains.npy             (N,) domain names (strings) or integers
    PATH/split.npy               optional (N,) 'train' / 'test' / 'all'
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from crossfuse.data.dataset import SPLIT_VALUES, MultimodalDataset
from crossfuse.errors import DataError

MODALITY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError(
                f"{path}: holds Python objects (pickled); save plain numeric or string arrays"
            ) from None
        raise DataError(f"{path}: not a readable .npy array ({error})") from None
    except Exception as error:
        raise DataError(f"{path}: not a readable .npy array ({type(error).__name__}: {error})") from None


def _as_strings(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype.kind in "iu":
        return array.astype(str)
    if array.dtype.kind in "US":
        return array.astype(str)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        return array.astype(np.int64).astype(str)
    raise DataError(f"{path}: domains must be strings or integers, found dtype {array.dtype}")


def load_folder(path: str | Path) -> MultimodalDataset:
    """Read and validate a bring-your-own-data folder.

    Raises
    ------
    DataError
        Naming the file and the problem: missing file, unreadable array, mismatched lengths, NaN or inf,
        labels that are not integers, an empty modalities folder, a bad split value, a domain without rows.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (give a dataset name such as av-digits, or a data folder)")
    modality_dir = root / "modalities"
    if not modality_dir.is_dir():
        raise DataError(f"{modality_dir}: missing folder (one <name>.npy per modality)")
    files = sorted(modality_dir.glob("*.npy"))
    if not files:
        raise DataError(f"{modality_dir}: no modality files (*.npy) found")
    labels_path, domains_path, split_path = root / "labels.npy", root / "domains.npy", root / "split.npy"
    labels = _load(labels_path)
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected shape (N,), found {labels.shape}")
    n = len(labels)
    if n == 0:
        raise DataError(f"{labels_path}: no samples")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DataError(f"{labels_path}: labels must be integers, found non-integer values")
    elif labels.dtype.kind not in "iub":
        raise DataError(f"{labels_path}: labels must be integers, found dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise DataError(f"{labels_path}: labels must be >= 0, found {labels.min()}")
    modalities = {}
    for file in files:
        name = file.stem
        if not MODALITY_NAME.fullmatch(name):
            raise DataError(f"{file}: modality name {name!r} must be letters, digits, '_' or '-'")
        array = _load(file)
        if array.dtype.kind not in "iufb":
            raise DataError(f"{file}: modality {name!r} must be numeric, found dtype {array.dtype}")
        if array.ndim < 2 or array.ndim > 4:
            raise DataError(
                f"{file}: modality {name!r} has shape {array.shape}; need (N, d), (N, T, F) or (N, C, H, W)"
            )
        if len(array) != n:
            raise DataError(
                f"{file}: modality {name!r} has {len(array)} samples but {labels_path.name} has {n}"
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            bad = int(np.flatnonzero(~np.isfinite(array.reshape(n, -1)).all(1))[0])
            raise DataError(f"{file}: modality {name!r} contains NaN or inf (first at sample {bad})")
        with np.errstate(over="ignore"):
            single = array.astype(np.float32)
        if not np.all(np.isfinite(single)):
            bad = int(np.flatnonzero(~np.isfinite(single.reshape(n, -1)).all(1))[0])
            raise DataError(
                f"{file}: modality {name!r} has values beyond the float32 range "
                f"(first at sample {bad}); rescale it"
            )
        modalities[name] = single
    domains_raw = _load(domains_path)
    if domains_raw.shape != (n,):
        raise DataError(
            f"{domains_path}: expected shape ({n},) to match {labels_path.name}, found {domains_raw.shape}"
        )
    domains = _as_strings(domains_raw, domains_path)
    split = None
    if split_path.exists():
        split = _load(split_path)
        if split.shape != (n,) or split.dtype.kind not in "US":
            raise DataError(
                f"{split_path}: expected ({n},) strings train/test/all, found {split.dtype} {split.shape}"
            )
        split = split.astype(str)
        unknown = sorted(set(split.tolist()) - set(SPLIT_VALUES))
        if unknown:
            raise DataError(f"{split_path}: unknown split values {unknown} (use 'train', 'test', 'all')")
    return MultimodalDataset(root.name, modalities, labels, domains, split, tasks={})
