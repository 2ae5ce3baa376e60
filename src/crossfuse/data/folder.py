"""Bring-your-own-data: a folder of ``.npy`` arrays, validated with one clear message per problem.

::

    PATH/modalities/<name>.npy   one array per modality, first axis = samples (any numeric dtype):
                                 (N, d) vectors, (N, T, F) sequences, (N, C, H, W) or (N, H, W, C) images
    PATH/labels.npy              (N,) class labels: any integers or strings; -1 or "" = no label;
                                 or float regression targets (NaN = no target)
    PATH/domains.npy             (N,) domain names (strings) or integers
    PATH/split.npy               optional (N,) 'train' / 'test' / 'all'

:func:`read_modalities` reads ``modalities/`` alone (what ``crossfuse predict`` needs).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

import numpy as np

from crossfuse.data.dataset import SPLIT_VALUES, MultimodalDataset
from crossfuse.data.missing import missing_rows
from crossfuse.errors import DataError

MODALITY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
#: Float labels with more distinct values than this are read as regression targets by ``'auto'``.
MAX_AUTO_CLASSES = 50
#: At most this many channels are taken for the last axis of a channel-last image.
MAX_CHANNELS_LAST = 4


def load_array(path: Path, mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    with path.open("rb") as file:
        # np.load takes any other file for a pickle, and would call a text file "pickled objects"
        if file.read(6) != b"\x93NUMPY":
            raise DataError(f"{path}: not a .npy file (write it with numpy.save)")
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError(
                f"{path}: holds Python objects (pickled, dtype object, as pandas' to_numpy() gives for "
                "text); save plain numeric or string arrays, e.g. "
                "np.save(path, np.asarray(values, dtype=str))"
            ) from None
        raise DataError(f"{path}: not a readable .npy array ({error})") from None
    except Exception as error:
        raise DataError(f"{path}: not a readable .npy array ({type(error).__name__}: {error})") from None
    if array.ndim == 0:
        raise DataError(f"{path}: holds a single value (shape ()); need one entry a sample")
    return array


def as_domain_names(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype.kind in "iu":
        return array.astype(str)
    if array.dtype.kind in "US":
        return array.astype(str)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        return array.astype(np.int64).astype(str)
    raise DataError(f"{path}: domains must be strings or integers, found dtype {array.dtype}")


def image_layout(shape: tuple[int, ...], where: str) -> str:
    """``'channels_first'`` or ``'channels_last'`` for an image array of shape ``(N, a, b, c)``.

    The channel axis is the one that is small (at most 4: grey, RGB, RGBA) or smaller than both other
    axes; when both ends are small, the smaller (``(N, 4, 4, 1)`` is a grey 4x4 image), and
    ``(N, C, H, W)`` wins a tie. An array where neither end can be the channel axis is refused.
    """
    a, b, c = shape[1:]
    if a <= MAX_CHANNELS_LAST and c <= MAX_CHANNELS_LAST:
        return "channels_last" if c < a else "channels_first"
    if a <= MAX_CHANNELS_LAST or a < min(b, c):
        return "channels_first"
    if c <= MAX_CHANNELS_LAST or c < min(a, b):
        return "channels_last"
    raise DataError(
        f"{where}: cannot tell the channel axis of images of shape {tuple(shape)}; "
        "save them as (N, C, H, W) (channels first) or (N, H, W, C) with at most 4 channels"
    )


def to_channels_first(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(array, -1, 1))


def check_modality(
    name: str,
    array: np.ndarray,
    where: str,
    n: int | None = None,
    missing_allowed: bool = True,
    partial_allowed: bool = True,
) -> np.ndarray:
    """Validate one modality array and return it as float32 (raising :class:`DataError` naming ``where``);
    a one-dimensional ``(N,)`` array is one feature a sample, ``(N, 1)``. A sample whose every value is
    NaN lacks the modality (:mod:`crossfuse.data.missing`) and stays NaN, unless not ``missing_allowed``;
    a NaN in part of a sample is a missing value, which the model fills in
    (:class:`~crossfuse.normalize.Standardize`), unless not ``partial_allowed``; an infinity is refused."""
    if array.dtype.kind not in "iufb":
        raise DataError(f"{where}: modality {name!r} must be numeric, found dtype {array.dtype}")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim < 2 or array.ndim > 4:
        raise DataError(
            f"{where}: modality {name!r} has shape {array.shape}; need (N, d), (N, T, F) or (N, C, H, W)"
        )
    if n is not None and len(array) != n:
        raise DataError(f"{where}: modality {name!r} has {len(array)} samples but labels.npy has {n}")
    if len(array) == 0 or 0 in array.shape[1:]:
        raise DataError(f"{where}: modality {name!r} is empty (shape {array.shape})")
    rows = len(array)
    missing = missing_rows(array)
    some_missing = bool(missing.any())
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        flat = array.reshape(rows, -1)
        infinite = np.isinf(flat).any(1)
        if infinite.any():
            bad = int(np.flatnonzero(infinite)[0])
            raise DataError(f"{where}: modality {name!r} contains inf (first at sample {bad})")
        partial = np.isnan(flat).any(1) & ~missing
        if partial.any() and not partial_allowed:
            raise DataError(
                f"{where}: modality {name!r} has NaN in part of sample {int(np.flatnonzero(partial)[0])}, "
                "and this model cannot fill in a missing value (it keeps no training mean: trained with "
                "--normalization none, or standardised by a normalizer of its own); fill in the values"
            )
    if some_missing and not missing_allowed:
        raise DataError(
            f"{where}: modality {name!r} is missing (every value NaN) at sample "
            f"{int(np.flatnonzero(missing)[0])}, and the model has no placeholder for it (it was trained on "
            "samples that all had it, without --modality-dropout)"
        )
    with np.errstate(over="ignore"):
        single = array.astype(np.float32)
    if array.dtype.kind == "f" and np.isinf(single).any():  # no infinity came in: these overflowed
        bad = int(np.flatnonzero(np.isinf(single.reshape(rows, -1)).any(1))[0])
        raise DataError(
            f"{where}: modality {name!r} has values beyond the float32 range (first at sample {bad}); "
            "rescale it"
        )
    return single


def read_modalities(
    root: str | Path, n: int | None = None, rows: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``modalities/*.npy`` of a folder as float32 arrays, images channels first; also which modalities
    were given channels last. ``n``, when known, is the number of rows every modality must have;
    ``rows``, when given, the only rows read (the files are memory-mapped, so the others are never read
    nor checked)."""
    modality_dir = Path(root) / "modalities"
    if not modality_dir.is_dir():
        raise DataError(f"{modality_dir}: missing folder (one <name>.npy per modality)")
    files = sorted(modality_dir.glob("*.npy"))
    if not files:
        raise DataError(f"{modality_dir}: no modality files (*.npy) found")
    modalities, layouts = {}, {}
    for file in files:
        name = file.stem
        if not MODALITY_NAME.fullmatch(name):
            raise DataError(f"{file}: modality name {name!r} must be letters, digits, '_' or '-'")
        array = load_array(file, mmap=rows is not None)
        if rows is not None:
            if n is not None and len(array) != n:
                raise DataError(f"{file}: modality {name!r} has {len(array)} samples but labels.npy has {n}")
            array = np.asarray(array[rows])
        array = check_modality(name, array, str(file), None if rows is not None else n)
        if array.ndim == 4 and image_layout(array.shape, f"{file}: modality {name!r}") == "channels_last":
            array, layouts[name] = to_channels_first(array), "channels_last"
        modalities[name] = array
    lengths = {len(a) for a in modalities.values()}
    if len(lengths) == 1:
        empty = np.logical_and.reduce([missing_rows(a) for a in modalities.values()])
        if empty.any():
            raise DataError(
                f"{modality_dir}: sample {int(np.flatnonzero(empty)[0])} lacks every modality (all NaN); "
                f"{int(empty.sum())} such sample(s): drop them"
            )
    if len(lengths) > 1:
        sizes = ", ".join(f"{m}: {len(a)}" for m, a in modalities.items())
        raise DataError(f"{modality_dir}: modalities have different numbers of samples ({sizes})")
    return modalities, layouts


def resolve_objective(labels: np.ndarray, objective: str, path: Path) -> str:
    """``'classification'`` or ``'regression'``: ``objective`` itself, or for ``'auto'`` regression when
    the labels are floats with a fractional part or more than :data:`MAX_AUTO_CLASSES` distinct values
    (integer-valued measurements, such as a disease score). A NaN is a missing label either way: whole
    numbers with NaN where the target domain's labels are unknown (a data frame's float column) are the
    same classes as without them."""
    if objective != "auto":
        return objective
    if labels.dtype.kind == "f":
        finite = labels[np.isfinite(labels)]
        if not np.all(finite == np.round(finite)):
            return "regression"
        if len(np.unique(finite)) > MAX_AUTO_CLASSES:
            return "regression"
    return "classification"


def read_targets(labels: np.ndarray, path: Path) -> np.ndarray:
    """Regression targets as float64, NaN where missing; infinities and non-numbers refused."""
    if labels.dtype.kind not in "iufb":
        raise DataError(f"{path}: regression targets must be numbers, found dtype {labels.dtype}")
    values = labels.astype(np.float64)
    if np.isinf(values).any():
        raise DataError(f"{path}: targets contain inf (use NaN for a missing target)")
    if np.isnan(values).all():
        raise DataError(f"{path}: no row has a target (NaN marks a missing one)")
    return values


def column_as_vector(labels: np.ndarray) -> np.ndarray:
    """Labels saved as one column (``y.reshape(-1, 1)``, a data frame's ``df[["y"]]``) as ``(N,)``."""
    return labels[:, 0] if labels.ndim == 2 and labels.shape[1] == 1 else labels


def read_labels(
    path: Path, n: int | None = None, objective: str = "auto"
) -> tuple[np.ndarray, list | None, str]:
    """The labels, the sorted class values and the objective.

    For classification: class indices ``(N,)`` (``-1`` where a label is missing). Labels may be any
    integers (``-1`` = missing) or strings (``""`` = missing); integer-valued floats are integers (NaN =
    missing). For regression (``objective='regression'``, or ``'auto'`` with float labels that have a
    fractional part or more than :data:`MAX_AUTO_CLASSES` values):
    float targets, NaN where missing, and no classes. ``(N, k)`` labels are ``k`` regression targets a
    sample, all of a row's given or none (a row of NaN has no target).
    """
    labels = column_as_vector(load_array(path))
    if labels.ndim == 2 and labels.shape[1] > 1:
        if objective == "classification":
            raise DataError(
                f"{path}: {labels.shape[1]} label columns are regression targets; a classification takes "
                "one label a sample, shape (N,)"
            )
        if n is not None and len(labels) != n:
            raise DataError(f"{path}: has {len(labels)} labels but the modalities have {n} samples")
        targets = read_targets(labels, path)
        known = targets[~np.isnan(targets)]
        if objective == "auto" and np.array_equal(known, np.round(known)):
            # whole numbers in several columns may be several class labels a sample: not guessed
            one_hot = bool(np.all((targets == 0) | (targets == 1)) and np.all(targets.sum(1) == 1))
            raise DataError(
                f"{path}: {labels.shape[1]} columns of whole numbers; "
                + (
                    "each row is one-hot: save the class of each sample instead, labels.argmax(axis=1)"
                    if one_hot
                    else "give --objective regression to read them as regression targets (several class "
                    "labels a sample, multi-label classification, is not supported)"
                )
            )
        missing = np.isnan(targets)
        partial = np.flatnonzero(missing.any(1) & ~missing.all(1))
        if len(partial):
            raise DataError(
                f"{path}: sample {partial[0]} has {int(missing[partial[0]].sum())} of its "
                f"{labels.shape[1]} targets missing ({len(partial)} such samples): give every target of a "
                "sample, or none (NaN in every column)"
            )
        return targets, None, "regression"
    if labels.ndim != 1:
        raise DataError(f"{path}: expected shape (N,), one label a sample, found {labels.shape}")
    if n is not None and len(labels) != n:
        raise DataError(f"{path}: has {len(labels)} labels but the modalities have {n} samples")
    if len(labels) == 0:
        raise DataError(f"{path}: no samples")
    if resolve_objective(labels, objective, path) == "regression":
        return read_targets(labels, path), None, "regression"
    if labels.dtype.kind == "f":
        if np.isinf(labels).any():
            raise DataError(f"{path}: labels contain inf (use -1 or NaN for a missing label)")
        known = labels[~np.isnan(labels)]
        if not np.all(known == np.round(known)):
            raise DataError(
                f"{path}: labels must be class values (integers or strings), found continuous values "
                "(non-integer floats; for regression, give --objective regression)"
            )
        labels = np.where(np.isnan(labels), -1, labels).astype(np.int64)
    if labels.dtype.kind == "b":
        labels = labels.astype(np.int64)
    if labels.dtype.kind in "iu":
        values = labels.astype(np.int64)
        present = values != -1
        classes = sorted(int(v) for v in np.unique(values[present]))
    elif labels.dtype.kind in "US":
        values = labels.astype(str)
        present = values != ""
        classes = sorted(str(v) for v in np.unique(values[present]))
    else:
        raise DataError(f"{path}: labels must be integers or strings, found dtype {labels.dtype}")
    if not classes:
        raise DataError(f'{path}: no row has a label (-1 and "" mark missing labels)')
    index = np.full(len(values), -1, dtype=np.int64)
    index[present] = np.searchsorted(np.array(classes), values[present])
    return index, classes, "classification"


def load_folder(
    path: str | Path, objective: str = "auto", domains: Collection[str] | None = None
) -> MultimodalDataset:
    """Read and validate a bring-your-own-data folder (``objective``: see :func:`read_labels`).

    With ``domains``, only the rows of those domains are read from the modality files (a run never
    touches the rows of a domain it does not use: an unseen domain stays unseen); the classes are still
    those of every row, so every such subset of a folder numbers the classes alike.

    Raises
    ------
    DataError
        Naming the file and the problem: missing file, unreadable array, mismatched lengths, NaN or inf,
        labels that are neither integers nor strings, an empty modalities folder, images whose channel axis
        cannot be told, a bad split value.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (give a dataset name such as av-digits, or a data folder)")
    labels_path, domains_path, split_path = root / "labels.npy", root / "domains.npy", root / "split.npy"
    labels, classes, chosen = read_labels(labels_path, objective=objective)
    n = len(labels)
    domains_raw = load_array(domains_path)
    if domains_raw.shape != (n,):
        raise DataError(
            f"{domains_path}: expected shape ({n},) to match {labels_path.name}, found {domains_raw.shape}"
        )
    names = as_domain_names(domains_raw, domains_path)
    rows, unread = None, ()
    if domains is not None:
        rows = np.flatnonzero(np.isin(names, list(domains)))
        if len(rows) == 0:  # every modality would read empty; a task names a lone unknown domain itself
            known = ", ".join(sorted(set(names.tolist())))
            asked = ", ".join(repr(d) for d in dict.fromkeys(domains))
            raise DataError(f"{domains_path}: no domain {asked} in this folder (domains: {known})")
        unread = tuple(sorted(set(names.tolist()) - set(domains)))
    modalities, layouts = read_modalities(root, n, rows)
    split = None
    if split_path.exists():
        split = load_array(split_path)
        if split.shape != (n,) or split.dtype.kind not in "US":
            raise DataError(
                f"{split_path}: expected ({n},) strings train/test/all, found {split.dtype} {split.shape}"
            )
        split = split.astype(str)
        unknown = sorted(set(split.tolist()) - set(SPLIT_VALUES))
        if unknown:
            raise DataError(f"{split_path}: unknown split values {unknown} (use 'train', 'test', 'all')")
    if rows is not None:
        labels, names = labels[rows], names[rows]
        split = None if split is None else split[rows]
    return MultimodalDataset(
        root.name,
        modalities,
        labels,
        names,
        split,
        tasks={},
        class_names=classes,
        layouts=layouts,
        objective=chosen,
        unread_domains=unread,
    )
