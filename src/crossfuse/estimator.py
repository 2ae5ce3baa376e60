"""A scikit-learn style estimator over crossfuse's runs, with skada's ``sample_domain`` convention."""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.utils.validation import check_array, validate_data

from crossfuse.errors import ConfigError, CrossfuseError, DataError

if TYPE_CHECKING:
    from crossfuse.predictor import TrainedModel

#: Columns of a flat ``X`` without a ``modalities`` layout: one vector modality of this name.
DEFAULT_MODALITY = "x"


class NotFitted(ConfigError, NotFittedError):
    """``predict`` before ``fit``: crossfuse's refusal and scikit-learn's ``NotFittedError`` at once."""


def numeric(X: Any, name: str, flat: bool) -> np.ndarray:
    """``X`` as scikit-learn validates an input: a sparse matrix made dense (the models are dense), numbers
    held as Python objects converted, complex values refused with scikit-learn's message; NaN is kept (a
    missing value or modality) and infinities are left to the run's check, which names the first sample
    that holds one. ``flat``: a 2-D array is required."""
    if sparse.issparse(X):
        X = X.toarray()
    return check_array(
        X,
        dtype="numeric",
        ensure_all_finite=False,  # the run's own check names the modality and the first sample
        ensure_2d=flat,
        allow_nd=not flat,
        input_name=name,
    )


def refuse_text_columns(X: Any) -> None:
    """A data frame's text, category, date or duration columns, named, with what to do (scikit-learn's own
    check says only that some string could not be converted to a float): the models take numbers. A column
    of numbers held as Python objects (what some pandas operations leave) passes, as scikit-learn takes
    it."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(dtypes, "items"):
        return
    import pandas as pd

    def numbers_as_objects(column: Any) -> bool:
        values = X[column]
        return (
            pd.api.types.is_object_dtype(values.dtype)
            and pd.to_numeric(values, errors="coerce").notna().eq(values.notna()).all()
        )

    kinds = {"text or categories": [], "dates or durations": []}
    for column, kind in dtypes.items():
        if pd.api.types.is_numeric_dtype(kind):  # bool is numeric
            continue
        if pd.api.types.is_datetime64_any_dtype(kind) or pd.api.types.is_timedelta64_dtype(kind):
            kinds["dates or durations"].append(str(column))
        elif not numbers_as_objects(column):
            kinds["text or categories"].append(str(column))
    for what, columns in kinds.items():
        if columns:
            shown = ", ".join(map(repr, columns[:5])) + (
                f" and {len(columns) - 5} more" if len(columns) > 5 else ""
            )
            fix = (
                "encode them first (sklearn.preprocessing.OneHotEncoder in a ColumnTransformer)"
                if what == "text or categories"
                else "turn them into numbers first (e.g. days since a date, or the year and month)"
            )
            raise DataError(
                f"X: column(s) {shown} hold {what}; the models take numbers: {fix} or leave them out"
            )


def in_estimator_terms(message: str, folder: Path) -> str:
    """A message of the run on the scratch folder :meth:`MultimodalEstimator.fit` writes, in the terms of
    the call (``X``, ``y``, the estimator's parameters) rather than its scratch files and command flags."""
    for path in sorted((folder / "modalities").glob("*.npy")):
        message = message.replace(f"{path}:", "X:")
    message = message.replace(f"{folder / 'labels.npy'}:", "y:")
    message = message.replace("give --objective regression", "use MultimodalRegressor")
    return message.replace("--transfer ", "transfer=")


class MultimodalEstimator(BaseEstimator):
    """Fusion and transfer as a scikit-learn estimator: ``fit(X, y, sample_domain)``, ``predict``,
    ``predict_proba``, ``score``, ``get_params`` / ``set_params`` (so ``sklearn.base.clone``, grid
    search and cross-validation take it).

    ``X`` is a dict of arrays, one per modality (``(N, d)``, ``(N, T, F)`` or ``(N, C, H, W)``), or one
    2-D array whose columns ``modalities`` lays out (``{'audio': (20, 13), 'image': (1, 16, 16)}``: each
    modality takes the next ``prod(shape)`` columns, reshaped), so that scikit-learn can index and split
    it. ``sample_domain`` follows skada: a positive integer ``k`` marks a row of source domain ``k``, a
    negative one a row of target domain ``-k``, whose label is not used for training (skada masks it
    with ``-1``; on a source row an integer ``-1`` is a class, as in libsvm's ``{-1, +1}``); without it
    every row is source. ``fit`` runs what ``crossfuse run`` runs on such a folder (the same checks,
    normalisation, label-free selection on 20% of the source rows), with the target rows as the
    unlabelled stream, and keeps the trained model in memory.

    Parameters
    ----------
    fusion, transfer, selection
        Names from :data:`~crossfuse.registry.FUSIONS`, :data:`~crossfuse.registry.TRANSFERS` and
        :data:`~crossfuse.registry.SELECTION_CRITERIA`.
    modalities
        The layout of a flat ``X`` (name -> sample shape, or a width for a vector); ``None``: one vector
        modality.
    epochs, batch_size, lr, hidden_dim, dropout, objective, fusion_options, transfer_options, seed, device
        As the run settings of the same names (``crossfuse run --help``); ``None`` keeps the default.
    out
        A new folder to keep the run in (config, history, metrics, model; its ``data`` setting names a
        temporary copy of the arrays, removed after ``fit``); by default a temporary one. A folder that
        holds another run is refused, as by ``crossfuse run``.
    verbose
        Print the run's epoch lines.
    class_weight
        ``None``, ``'balanced'`` (each source class weighs ``n / (K n_c)`` in the loss, as scikit-learn's
        ``class_weight='balanced'``; ``crossfuse run --class-weight``) or ``{class value: weight}`` (a
        class left out weighs 1), as scikit-learn takes it.
    normalization
        Input scaling (``crossfuse run --normalization``): ``'auto'``, ``'feature'``, ``'global'``,
        ``'none'``, ``'domain'``, each domain standardised by its own statistics (the model keeps the
        target's, without target rows the source's, so that :meth:`predict` standardises rows by them),
        or ``'quantile'``, each vector feature mapped through its training quantiles to a normal
        (scikit-learn's ``QuantileTransformer``, inside the model; for tables of skewed amounts, counts
        and codes; it clips values beyond the training range, so under shift check it on held-out
        target labels first: the README's *Quantile normalisation on real tables*).
    missing_indicators
        Give each vector feature with missing values (NaN) in the source rows an indicator column, 1 where
        the value is missing (``crossfuse run --missing-indicators``; scikit-learn's
        ``SimpleImputer(add_indicator=True)``).
    regression_margin
        A regression's predictions stay within the training targets' range widened by this share of it
        on either side (``crossfuse run --regression-margin``; ``None``: the default, 0.1; ``inf``: not
        clipped).

    Attributes
    ----------
    classes_
        The class values, in the column order of :meth:`predict_proba` (classification).
    result_
        The run's :class:`~crossfuse.results.RunResult` (chosen epoch, warnings, ...).
    """

    #: The objective a subclass always trains (scikit-learn's estimator type), else ``objective``.
    fixed_objective: str | None = None

    def __init__(
        self,
        fusion: str = "late",
        transfer: str = "source-only",
        selection: str = "source-val",
        modalities: Mapping[str, Any] | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        hidden_dim: int | None = None,
        dropout: float | None = None,
        objective: str = "auto",
        fusion_options: Mapping[str, Any] | None = None,
        transfer_options: Mapping[str, Any] | None = None,
        seed: int = 0,
        device: str = "auto",
        out: str | Path | None = None,
        verbose: bool = False,
        class_weight: str | Mapping[Any, float] | None = None,
        normalization: str = "auto",
        missing_indicators: bool = False,
        regression_margin: float | None = None,
    ) -> None:
        self.fusion, self.transfer, self.selection = fusion, transfer, selection
        self.modalities = modalities
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.hidden_dim, self.dropout, self.objective = hidden_dim, dropout, objective
        self.fusion_options, self.transfer_options = fusion_options, transfer_options
        self.seed, self.device, self.out, self.verbose = seed, device, out, verbose
        self.class_weight = class_weight
        self.normalization = normalization
        self.missing_indicators = missing_indicators
        self.regression_margin = regression_margin

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing value, or a whole missing modality
        tags.input_tags.sparse = True  # made dense
        return tags

    def split_modalities(self, X: Any, fitting: bool = False) -> dict[str, np.ndarray]:
        """``X`` as ``{modality: array}`` (see the class docstring). A flat ``X`` sets ``n_features_in_``
        when ``fitting`` and must match it after."""
        if isinstance(X, Mapping) and not sparse.issparse(X):  # (scipy's dok_matrix is a dict)
            if fitting:
                self.__dict__.pop("n_features_in_", None)
                self.__dict__.pop("feature_names_in_", None)
            return {str(m): numeric(a, f"X[{m!r}]", flat=False) for m, a in X.items()}
        if len(getattr(X, "shape", ())) > 2:
            raise DataError(f"X: a dict of arrays, or a 2-D array (rows x columns); got shape {X.shape}")
        if not fitting and not hasattr(self, "n_features_in_"):
            raise DataError("X: this estimator was fitted on a dict of arrays; give one again")
        refuse_text_columns(X)
        # scikit-learn's own validation: n_features_in_ (and feature_names_in_ for a data frame) set at
        # fit and checked after; a 1-D X gets its "Reshape your data" message
        flat = validate_data(
            self, X, reset=fitting, accept_sparse=True, dtype="numeric", ensure_all_finite=False
        )
        if sparse.issparse(flat):
            flat = flat.toarray()
        layout = self.modalities or {DEFAULT_MODALITY: flat.shape[1]}
        shapes = {m: (int(s),) if np.ndim(s) == 0 else tuple(int(v) for v in s) for m, s in layout.items()}
        widths = {m: math.prod(shape) for m, shape in shapes.items()}
        if sum(widths.values()) != flat.shape[1]:
            described = ", ".join(f"{m} {shape}" for m, shape in shapes.items())
            raise DataError(
                f"X: {flat.shape[1]} columns, but modalities ({described}) take {sum(widths.values())}"
            )
        arrays, start = {}, 0
        for m, shape in shapes.items():
            arrays[m] = flat[:, start : start + widths[m]].reshape(len(flat), *shape)
            start += widths[m]
        return arrays

    def settings(self, folder: Path, sources: list[str], targets: list[str], transfer: str) -> dict[str, Any]:
        """The run configuration's values: the estimator's parameters that are set."""
        values = {
            "data": str(folder),
            "source": sources,
            "target": targets or None,
            "fusion": self.fusion,
            "transfer": transfer,
            "selection": self.selection,
            "normalization": self.normalization,
            "missing_indicators": self.missing_indicators,
            "objective": self.fixed_objective or self.objective,
            "seed": self.seed,
            "device": self.device,
            "fusion_options": dict(self.fusion_options or {}),
            "transfer_options": dict(self.transfer_options or {}),
        }
        optional = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout,
            "regression_margin": self.regression_margin,
            "class_weight": {str(k): float(v) for k, v in self.class_weight.items()}
            if isinstance(self.class_weight, Mapping)
            else self.class_weight,
        }
        return values | {k: v for k, v in optional.items() if v is not None}

    def transfer_without_target(self) -> str:
        """The method to run when no row is a target row: a domain-generalisation method as it is,
        ``source-only`` as ``erm`` (the same loss, on the pooled source domains, which needs no target);
        a method that adapts to target rows is refused."""
        from crossfuse.registry import TRANSFERS

        method = TRANSFERS.get_or_refuse(self.transfer, "transfer")
        if method.domain_generalization:
            return self.transfer
        if method.uses_target or method.needs_target_shots:
            raise DataError(
                f"transfer {self.transfer!r} adapts to target rows; give some with a negative sample_domain"
            )
        return "erm"

    def fit(self, X: Any, y: Any, sample_domain: Any = None) -> MultimodalEstimator:
        """Train on the source rows (``sample_domain > 0``), adapting to the target rows (``< 0``)."""
        from crossfuse.config import load_config
        from crossfuse.predictor import load
        from crossfuse.runner import run

        if y is None:
            raise DataError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        arrays = self.split_modalities(X, fitting=True)
        labels = np.asarray(y)
        if labels.dtype == object:  # numbers or strings held as Python objects
            labels = np.asarray(labels.tolist())
        if labels.ndim == 2 and labels.shape[1] == 1:
            # a column vector, taken as scikit-learn takes it: with its warning
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                "to (n_samples,), for example using ravel().",
                DataConversionWarning,
                stacklevel=2,
            )
            labels = labels[:, 0]
        several = labels.ndim == 2 and self.fixed_objective != "classification"
        if labels.ndim != 1 and not several:
            raise DataError(
                f"y: expected one label a row, shape (n_samples,), found {labels.shape}"
                + ("" if self.fixed_objective == "classification" else " or (n_samples, n_targets)")
            )
        n = len(labels)
        rows = {m: len(a) for m, a in arrays.items() if len(a) != n}
        if rows:
            m, count = next(iter(rows.items()))
            raise DataError(f"X: modality {m!r} has {count} rows and y has {n}")
        domain = np.ones(n, dtype=int) if sample_domain is None else np.asarray(sample_domain)
        if domain.shape != (n,) or domain.dtype.kind not in "iu" or (domain == 0).any():
            raise DataError(
                f"sample_domain: need {n} nonzero integers (k > 0: source domain k, k < 0: target domain -k)"
            )
        names = np.char.add(np.where(domain > 0, "source", "target"), np.abs(domain).astype(str))
        sources = sorted({str(d) for d in names[domain > 0]})
        targets = sorted({str(d) for d in names[domain < 0]})
        if not sources:
            raise DataError("sample_domain: no source row (a positive domain); nothing to learn from")
        labels, self.label_values_ = self.minus_one_as_a_class(labels, domain)
        self.check_source_labels(labels[domain > 0])
        transfer = self.transfer_without_target() if not targets else self.transfer
        with tempfile.TemporaryDirectory(prefix="crossfuse-") as scratch:
            folder = Path(scratch) / "data"
            (folder / "modalities").mkdir(parents=True)
            for m, array in arrays.items():
                np.save(folder / "modalities" / f"{m}.npy", array)
            np.save(folder / "labels.npy", labels)
            np.save(folder / "domains.npy", names)
            # source rows are labelled training rows; target rows are the unlabelled stream (and scored
            # only where a label was given)
            np.save(folder / "split.npy", np.where(domain > 0, "train", "all"))
            config = load_config(None, self.settings(folder, sources, targets, transfer))
            out = Path(self.out) if self.out is not None else Path(scratch) / "run"
            log = print if self.verbose else (lambda line: None)
            try:
                self.result_ = run(config, out, log)
            except CrossfuseError as error:
                raise type(error)(in_estimator_terms(str(error), folder)) from None
            self.model_ = load(out)
        if self.model_.objective == "classification":
            self.classes_ = np.asarray(self.model_.classes)
            if self.label_values_ is not None:
                self.classes_ = self.label_values_[self.classes_]
        return self

    def minus_one_as_a_class(self, labels: np.ndarray, domain: np.ndarray) -> tuple[np.ndarray, Any]:
        """A classifier's integer labels with a ``-1`` on a source row (libsvm's ``{-1, +1}``): ``-1`` is
        a class there, and marks a missing label only on a target row (skada's convention, which masks
        target rows alone). Such labels are trained as the positions of their values among the classes
        (a masked target row keeps ``-1``), and :meth:`predict` maps them back; returns the labels to
        train on and the class values (``None`` when nothing was mapped)."""
        if self.fixed_objective != "classification" or labels.dtype.kind not in "iu":
            return labels, None
        if not (labels[domain > 0] == -1).any():
            return labels, None
        masked = (domain < 0) & (labels == -1)
        values = np.unique(labels[~masked])
        return np.where(masked, -1, np.searchsorted(values, labels)), values

    def check_source_labels(self, labels: np.ndarray) -> None:
        """Refuse, before any file is written, source labels that leave nothing to learn: fewer than two
        known ones, or (for a classifier) a continuous target or a single class."""
        if self.fixed_objective == "classification":
            known = labels[labels != (-1 if labels.dtype.kind in "iuf" else "")]
        elif labels.dtype.kind == "f":
            missing = np.isnan(labels)
            known = labels[~(missing.any(1) if labels.ndim == 2 else missing)]
        else:
            known = labels
        if len(known) < 2:
            raise DataError(
                f"y: {len(known)} sample(s) with a label among the source rows; fit needs at least 2"
            )
        if self.fixed_objective == "classification" and len(np.unique(known)) < 2:
            raise DataError(
                f"y: the source rows hold one class ({known[0].item()!r}); a classifier needs at least 2 "
                "classes"
            )

    def fitted_model(self) -> TrainedModel:
        """The trained model (:class:`~crossfuse.predictor.TrainedModel`); refused before ``fit``."""
        if not hasattr(self, "model_"):
            raise NotFitted(f"this {type(self).__name__} is not fitted yet: call fit(X, y, sample_domain)")
        return self.model_

    def standardize_on(self, X: Any) -> MultimodalEstimator:
        """Re-fit the fitted model's input standardisation on the rows of ``X`` (another domain's, at
        least two), each modality keeping its kind of statistics, so that :meth:`predict` standardises
        that domain by its own moments (``crossfuse adapt --method standardize``); returns ``self``."""
        self.fitted_model().standardize_on(self.split_modalities(X))
        return self

    def predict(self, X: Any, sample_domain: Any = None) -> np.ndarray:
        """Class values (or predicted values, for a regression); ``sample_domain`` is not needed."""
        model = self.fitted_model()
        predicted = model.predict(self.split_modalities(X))
        if getattr(self, "label_values_", None) is not None:  # positions among the classes, trained
            return self.label_values_[predicted.astype(int)]
        # a regression's float32 values as float64, scikit-learn's type for them (the same numbers)
        return predicted.astype(np.float64) if model.objective == "regression" else predicted

    def score(self, X: Any, y: Any, sample_domain: Any = None) -> float:
        """Accuracy (classification) or R^2 (regression) on the rows whose label is known."""
        predicted = self.predict(X)
        labels = np.asarray(y)
        if self.fitted_model().objective == "regression":
            from sklearn.metrics import r2_score

            known = ~np.isnan(labels.astype(float))
            known = known.all(1) if known.ndim == 2 else known
            return float(r2_score(labels[known], predicted[known]))
        if getattr(self, "label_values_", None) is not None:  # -1 is a class here
            return float((predicted == labels).mean())
        known = labels != (-1 if labels.dtype.kind in "iu" else "")
        return float((predicted[known] == labels[known]).mean())


class MultimodalClassifier(ClassifierMixin, MultimodalEstimator):
    """:class:`MultimodalEstimator` for classes (scikit-learn's classifier type, so cross-validation
    stratifies its folds); ``score`` is the accuracy over the rows with a label (``-1`` or ``""``
    masks one, as skada does)."""

    fixed_objective = "classification"

    def predict_proba(self, X: Any, sample_domain: Any = None) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``, columns in the order of ``classes_``."""
        model = self.fitted_model()
        return model.predict_proba(self.split_modalities(X))

    def score(self, X: Any, y: Any, sample_domain: Any = None) -> float:
        return MultimodalEstimator.score(self, X, y, sample_domain)


class MultimodalRegressor(RegressorMixin, MultimodalEstimator):
    """:class:`MultimodalEstimator` for real values (scikit-learn's regressor type): ``y`` of shape
    ``(n_samples,)`` or ``(n_samples, n_targets)``, one model for all targets; ``score`` is R^2 over the
    rows whose value is not NaN (its mean over the targets)."""

    fixed_objective = "regression"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def score(self, X: Any, y: Any, sample_domain: Any = None) -> float:
        return MultimodalEstimator.score(self, X, y, sample_domain)
