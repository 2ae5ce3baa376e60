"""Per-modality input standardisation, fitted on training rows and stored in the model's buffers.

``x' = (x - mean) / scale``, with statistics that suit the kind of input:

- ``'feature'``: one mean and scale per feature (vectors), per frame feature pooled over time (sequences),
  per channel pooled over pixels (images). The scale is ``max(std_j, 0.1 max_i |x_ij - mean_j|)``: for a
  dense feature (``max dev ~ 3 std``) it is the standard deviation; for a rare, spiky one (a word seen in
  three documents, an edge pixel lit once) it is floored so that no training value lands beyond 10.
  A feature that does not vary in the training rows gets scale 1, scikit-learn's rule
  (``StandardScaler``): dividing by its rounding noise would send any other value to ``1e5`` and beyond.
- ``'global'``: one mean per feature, one scale for the whole modality (the pooled standard deviation).
  For inputs whose features share one unit (pixel intensities, word counts), this keeps their relative
  sizes: per-feature scaling blows up the pixels that are dark in every source image as soon as the
  target's digits are rotated into them.
- ``'auto'`` (the default): ``'global'`` for a vector modality whose training values are non-negative and
  either all integers (counts, 8-bit pixels) or all within ``[0, 1]`` (intensities, frequencies), unless
  they are sparse (fewer than ``SPARSE_SHARE`` of them nonzero: word counts, tf-idf, one-hot codes) or
  their features do not share a range (:func:`shares_a_range`: integer columns in different units, a
  weight in pounds beside yes/no answers); ``'feature'`` otherwise (dense real features of mixed units,
  sparse counts, integer tables), and always for sequences and images (whose statistics are already
  pooled per channel). Sparse counts are scaled per feature
  because their features do not share a scale the way pixels do: word frequencies span orders of
  magnitude, and one global scale leaves the rare, informative words near zero while the frequent ones
  dominate (the reason text models use tf-idf or standardised counts). Measured on a synthetic
  bag-of-words corpus (0.75% nonzero), source-only read 71.2 per feature against 66.4 global; the pixel
  vectors of the suite are 41-52% nonzero and keep their global scale.
- ``'domain'``: each domain standardised by its own statistics, of the kind ``'auto'`` picks for the
  reference's values (per-domain standardisation; cepstral mean and variance normalisation per speaker
  in speech, Viikki & Laurila 1998; AdaBN at the input, Li et al., "Revisiting Batch Normalization For
  Practical Domain Adaptation", 2016). The model keeps the statistics of a reference (the unlabelled
  target rows; without any, the source's), and :mod:`crossfuse.data.domain_moments` maps the other
  domains' rows onto them before training, ``x' = (x - mean_d) / scale_d * scale_R + mean_R``, so that
  every domain reaches the encoders standardised by its own moments. It undoes a shift that is an affine
  change of each feature (another instrument's gain and offset, another speaker's voice), and it is wrong
  when the classes' shares differ between the domains: the moments then move because the classes did,
  and matching them moves the classes (measured in the README's *Per-domain standardisation*).
- ``'quantile'``: each feature of a vector mapped through its training quantiles to a standard normal,
  ``x' = Phi^{-1}(F(x))``, with ``F`` the piecewise-linear empirical distribution function through
  :data:`N_QUANTILES` quantiles (scikit-learn's ``QuantileTransformer(output_distribution='normal')``,
  here inside the model). A value that several training rows share gets the middle of their share
  (mid-rank): a yes/no column maps to two moderate values, where scikit-learn sends both to the clipping
  bound (``+-5.2``). Skewed amounts, counts and identifiers reach the first layer spread evenly, which is
  what a multilayer perceptron learns thresholds from (Gorishniy et al., "Revisiting Deep Learning Models
  for Tabular Data", NeurIPS 2021, preprocess numerical features with it by default). A value
  beyond the training range maps to the bound, ``Phi^{-1}(1e-7) = -5.2`` or ``+5.2``: under shift the
  target's values outside the source's range are clipped, which is why it is not the default. Sequences
  and images are scaled per feature (per channel) instead. ``benchmarks/quantile_tables.py`` measures it.
- ``'none'``: the identity.

``benchmarks/normalization.py`` measures the choice on several data sets.

A missing value (a NaN in part of a sample) is left out of the statistics and filled in with its
feature's training mean, so that it enters the encoder as 0 (mean imputation, what scikit-learn's
``SimpleImputer`` does by default, here inside the model so that ``predict`` and an exported model fill
in the same way; ``'quantile'`` gives it the median's score, 0). ``'none'`` keeps no mean, and the
runner refuses missing values with it. ``benchmarks/missing_values.py`` measures the filling against a
logistic regression with ``SimpleImputer``. Given ``indicators`` (``crossfuse run --missing-indicators``:
the vector features with missing values in the training rows), each of those features also gets an
indicator column, 1 where its value is missing (scikit-learn's ``SimpleImputer(add_indicator=True)``,
here inside the model too): where values are missing not at random (a test not ordered because the
patient looked well) the hole itself carries information that the mean throws away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from crossfuse.config import NORMALIZATIONS  # the list lives where the command line reads it without torch

#: No training value of a feature lands further than ``1 / SPIKE_FLOOR`` scales from its mean.
SPIKE_FLOOR = 0.1
#: Counts or intensities with fewer than this share of their training values nonzero are sparse, and
#: ``'auto'`` scales them per feature (see the module docstring).
SPARSE_SHARE = 0.05
#: ``'auto'`` reads non-negative counts or intensities as one unit only when the median feature's largest
#: training value is at least this share of the largest feature's (:func:`shares_a_range`).
SHARED_RANGE = 0.25
#: Training quantiles ``'quantile'`` keeps of each feature, at evenly spaced levels (scikit-learn's
#: default). The mapping is linear between them: through the sorted training values themselves only when
#: there are exactly as many rows (scikit-learn takes ``min(1000, N)``; a fixed number keeps the buffer's
#: shape known before the rows are seen, so that a saved model loads).
N_QUANTILES = 1000
#: ``'quantile'`` keeps the distribution function's value within ``[QUANTILE_BOUND, 1 - QUANTILE_BOUND]``
#: (scikit-learn's ``BOUNDS_THRESHOLD``), so that the normal scores stay within ``+-5.2``.
QUANTILE_BOUND = 1e-7


def resolve_normalization(mode: str, x: np.ndarray) -> str:
    """The normalisation ``'auto'`` (and ``'domain'``, of the same kind) picks for training rows ``x`` of
    shape ``(N, *sample_shape)``."""
    if mode == "quantile":
        return "quantile" if x.ndim == 2 else "feature"
    if mode not in ("auto", "domain"):
        return mode
    if x.ndim != 2 or x.size == 0:
        return "feature"
    rows = x
    if np.isnan(x).any():  # the rule reads the values that are there
        x = x[~np.isnan(x)]
        if x.size == 0:
            return "feature"
    non_negative = bool(x.min() >= 0)
    integers = bool(np.all(x == np.round(x)))
    unit_interval = bool(x.max() <= 1)
    sparse = np.count_nonzero(x) < SPARSE_SHARE * x.size
    one_unit = non_negative and (integers or unit_interval) and not sparse and shares_a_range(rows)
    return "global" if one_unit else "feature"


def shares_a_range(x: np.ndarray) -> bool:
    """Whether the features of ``x`` (``(N, d)``, NaN = missing) that vary reach tops of one size: the
    median feature's largest value is at least :data:`SHARED_RANGE` times the largest feature's.

    Pixels reach the same top (255, or 1; a pixel lit in no image is constant and not counted), and so do
    the items of one questionnaire. Integer columns of different units do not (a mother's weight in
    pounds beside yes/no answers: 250 against 1), and one scale would shrink the small ones to nothing.
    """
    present = ~np.isnan(x)
    tops = np.where(present, x, -np.inf).max(axis=0)
    varying = tops > np.where(present, x, np.inf).min(axis=0)
    if not varying.any():
        return True
    tops = tops[varying]
    return bool(np.median(tops) >= SHARED_RANGE * tops.max())


def feature_quantiles(x: np.ndarray) -> np.ndarray:
    """``(d, N_QUANTILES)``: each feature's quantiles over the rows of ``x`` (``(N, d)``, NaN = missing) at
    levels ``0, 1 / (N_QUANTILES - 1), ..., 1``, linear between the sorted values (numpy's default); a
    feature with no value present gets zeros."""
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    data = np.asarray(x, dtype=np.float64)
    if not np.isnan(data).any():
        return np.quantile(data, levels, axis=0).T
    data = np.where(np.isnan(data).all(axis=0), 0.0, data)
    return np.nanquantile(data, levels, axis=0).T


def quantile_position(x: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Where each value of ``x`` (``(d, B)``) falls among its feature's sorted ``quantiles``
    (``(d, n)``), as a fractional index in ``[0, n - 1]``: linear between neighbours; a value equal to
    several quantiles gets the last of them; beyond the ends, the end (``numpy.interp(x, q, range(n))``)."""
    n = quantiles.shape[1]
    below = torch.searchsorted(quantiles, x, right=True) - 1  # the last quantile <= x, -1 if none
    index = below.clamp(0, n - 2)
    low, high = quantiles.gather(1, index), quantiles.gather(1, index + 1)
    gap = torch.where(high > low, high - low, torch.ones_like(high))  # no 0/0, not even where unused
    inside = index + ((x - low) / gap).clamp(0.0, 1.0)
    ends = torch.where(below < 0, 0.0, float(n - 1)).to(inside.dtype)
    return torch.where((below < 0) | (below >= n - 1), ends, inside)


def normal_scores(x: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """``Phi^{-1}(F(x))`` for a batch ``x`` (``(B, d)``), ``F`` the mid-rank empirical distribution
    function through each feature's ``quantiles`` (``(d, n)``, sorted): the mean of the interpolated level
    taken from below and from above, so that a value that several quantiles share sits in the middle of
    them. ``F`` is kept within :data:`QUANTILE_BOUND` of 0 and 1, and the score is computed from the nearer
    tail, so that it is symmetric in float32. A NaN scores 0: the search puts it after every quantile from
    either side, and the two levels average to the middle."""
    n = quantiles.shape[1]
    columns = x.t().contiguous().to(quantiles.dtype)  # searchsorted compares within one dtype
    from_below = quantile_position(columns, quantiles)
    from_above = (n - 1) - quantile_position(-columns, -quantiles.flip(1))
    total = from_below + from_above  # F(x) = total / (2 (n - 1))
    mirrored = 2 * (n - 1) - total
    tail = (torch.minimum(total, mirrored) / (2 * (n - 1))).clamp(min=QUANTILE_BOUND)
    scores = torch.special.ndtri(tail)
    return torch.where(total > mirrored, -scores, scores).t().to(x.dtype)


Moments = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def plain_moments(data: np.ndarray, axes: tuple[int, ...]) -> Moments:
    """Mean, standard deviation and largest absolute deviation from the mean over ``axes`` (kept), and
    the root mean square deviation of all of ``data`` from the mean."""
    mean = data.mean(axis=axes, keepdims=True)
    deviation = np.abs(data - mean)
    spread = float(np.sqrt((deviation**2).mean()))
    return mean, data.std(axis=axes, keepdims=True), deviation.max(axis=axes, keepdims=True), spread


def present_moments(data: np.ndarray, axes: tuple[int, ...]) -> Moments:
    """:func:`plain_moments` over the values that are not NaN (a feature without any: mean 0, deviation
    0). Kept apart so that complete data keeps numpy's plain reductions, bit for bit."""
    present = ~np.isnan(data)
    counts = np.maximum(present.sum(axis=axes, keepdims=True), 1)
    mean = np.where(present, data, 0.0).sum(axis=axes, keepdims=True) / counts
    squares = np.where(present, (data - mean) ** 2, 0.0)
    spread = float(np.sqrt(squares.sum() / max(int(present.sum()), 1)))
    std = np.sqrt(squares.sum(axis=axes, keepdims=True) / counts)
    return mean, std, np.sqrt(squares).max(axis=axes, keepdims=True), spread


class Standardize(nn.Module):
    """``(x - mean) / scale`` over one modality; see the module docstring for the rules.

    Parameters
    ----------
    sample_shape
        Shape of one sample: ``(d,)``, ``(T, F)`` or ``(C, H, W)``.
    mode
        ``'auto'``, ``'feature'``, ``'global'``, ``'domain'`` (fitted on the target's rows, see the module
        docstring), ``'quantile'`` or ``'none'``; :attr:`kind` holds what ``fit`` chose.
    indicators
        Features of a vector sample that get an indicator column, 1 where the value is missing (NaN),
        after the ``d`` standardised ones: the output is ``(batch, d + len(indicators))``
        (:attr:`output_shape`).
    """

    def __init__(
        self, sample_shape: tuple[int, ...], mode: str = "auto", indicators: Sequence[int] = ()
    ) -> None:
        super().__init__()
        if mode not in NORMALIZATIONS:
            raise ValueError(f"normalization {mode!r}: choose from {', '.join(NORMALIZATIONS)}")
        self.sample_shape = tuple(sample_shape)
        self.mode = mode
        self.kind = mode
        stat_shape = self._stat_shape(self.sample_shape)
        self.register_buffer("mean", torch.zeros(stat_shape))
        self.register_buffer("std", torch.ones(stat_shape))
        self.indicators = tuple(int(i) for i in indicators)
        if self.indicators and (len(self.sample_shape) != 1 or max(self.indicators) >= self.sample_shape[0]):
            raise ValueError(f"missing-value indicators {self.indicators} for samples of {self.sample_shape}")
        if mode == "quantile" and len(self.sample_shape) == 1:  # only then: other modes' weights unchanged
            self.register_buffer("quantiles", torch.zeros(self.sample_shape[0], N_QUANTILES))
        # not in the state dict: the card names the features, and older run folders load unchanged
        self.register_buffer(
            "indicator_index", torch.tensor(self.indicators, dtype=torch.long), persistent=False
        )

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape of one standardised sample: ``sample_shape``, with one column more for each feature
        that has a missing-value indicator."""
        if not self.indicators:
            return self.sample_shape
        return (self.sample_shape[0] + len(self.indicators),)

    @staticmethod
    def _stat_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) == 2:
            return (1, shape[1])
        if len(shape) == 3:
            return (shape[0], 1, 1)
        return shape

    @staticmethod
    def _pooled_axes(ndim: int) -> tuple[int, ...]:
        return {1: (0,), 2: (0, 1), 3: (0, 2, 3)}.get(ndim, (0,))

    def fit(self, x: np.ndarray, kind: str | None = None) -> Standardize:
        """Fit the statistics on training rows ``x`` of shape ``(N, *sample_shape)``, of ``kind`` when
        given (``'feature'``, ``'global'``, ``'quantile'`` or ``'none'``), else of the kind :attr:`mode`
        picks."""
        self.kind = kind if kind is not None else resolve_normalization(self.mode, x)
        if self.kind == "quantile" and not hasattr(self, "quantiles"):
            raise ValueError(f"no quantiles kept: mode {self.mode!r}, samples of {self.sample_shape}")
        if self.kind in ("none", "quantile") or len(x) == 0:
            self.mean.zero_()
            self.std.fill_(1.0)
            if self.kind == "quantile" and len(x):
                self.quantiles.copy_(torch.from_numpy(feature_quantiles(x)))
            return self
        axes = self._pooled_axes(x.ndim - 1)
        data = x.astype(np.float64)
        moments = present_moments if np.isnan(data).any() else plain_moments
        mean, std, max_deviation, spread = moments(data, axes)
        if self.kind == "global":
            scale = np.full_like(mean, spread if spread > 0 else 1.0)
        else:
            scale = np.maximum(std, SPIKE_FLOOR * max_deviation)
            reference = float(np.abs(mean).max() + std.max())
            constant = scale <= 1e-6 * max(reference, float(np.finfo(np.float32).tiny))
            scale = np.where(constant, 1.0, scale)
        self.mean.copy_(torch.from_numpy(mean[0].reshape(self.mean.shape)))
        self.std.copy_(torch.from_numpy(scale[0].reshape(self.std.shape)))
        return self

    def refit(self, x: np.ndarray) -> Standardize:
        """:meth:`fit` on other rows, keeping the kind of statistics already chosen (``'feature'``,
        ``'global'`` or ``'quantile'``; otherwise the kind :attr:`mode` picks): values that were mapped or
        come from another domain need not show it."""
        return self.fit(x, kind=self.kind if self.kind in ("feature", "global", "quantile") else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A missing value (NaN) is its feature's training mean, 0 once standardised; replacing it after the
        # division touches no present value and costs a twentieth of a select against the broadcast mean
        # (7 against 145 microseconds on an AV-Digits audio batch). Infinities are kept as they are.
        if self.kind == "quantile":  # a missing value is the median's score, 0
            standardized = normal_scores(x, self.quantiles).nan_to_num_(0.0)
        else:
            standardized = ((x - self.mean) / self.std).nan_to_num_(0.0, math.inf, -math.inf)
        if not self.indicators:
            return standardized
        missing = x.index_select(1, self.indicator_index).isnan().to(standardized.dtype)
        return torch.cat([standardized, missing], dim=1)
