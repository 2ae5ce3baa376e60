"""Robustness to missing and noisy modalities, with MultiBench's summary figures.

Liang et al., "MultiBench: Multiscale Benchmarks for Multimodal Representation Learning" (NeurIPS 2021
Datasets and Benchmarks): each modality is perturbed at rising strength and the model's performance is
traced as a curve; *relative robustness* is the area under that curve (trapezoids over strengths 0, 0.1,
..., 1), *effective robustness* the summed difference from a reference model's curve shifted to the same
clean performance, ``sum_k f_k - (r_k + f_0 - r_0)``. MultiBench then min-max normalises both across the
methods of a table; we report them raw, so they compare across runs.

Perturbations, strength ``s``, drawn with a seeded generator:

- vectors and images: Gaussian noise of standard deviation ``s`` times the modality's source scale (the
  model's normalisation scale), ``x + s sigma eps``;
- sequences: time masking, ``round(s T)`` frames of each sample set to the source mean.

A missing modality is the model's learned placeholder when it was trained with modality dropout, else its
source mean (the input its normalisation maps to zero).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from crossfuse.model import MultimodalModel
from crossfuse.normalize import Standardize

#: The strengths of MultiBench's curves.
STRENGTHS = tuple(round(0.1 * k, 1) for k in range(11))


def _statistics(model: MultimodalModel, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    normalizer = model.normalizers[name]
    if isinstance(normalizer, Standardize):
        return normalizer.mean.cpu().numpy(), normalizer.std.cpu().numpy()
    return np.zeros(x.shape[1:], dtype=np.float32), np.ones(x.shape[1:], dtype=np.float32)


def perturb(
    model: MultimodalModel, name: str, x: np.ndarray, strength: float, rng: np.random.Generator
) -> np.ndarray:
    """Modality ``name``'s rows ``x`` at noise ``strength`` (see the module docstring); ``strength = 0``
    returns ``x`` unchanged."""
    if strength == 0:
        return x
    mean, scale = _statistics(model, name, x)
    if x.ndim == 3:  # (N, T, F): time masking
        n, frames = x.shape[:2]
        masked = x.copy()
        count = int(round(strength * frames))
        for row in range(n):
            chosen = rng.choice(frames, size=count, replace=False)
            masked[row, chosen] = np.broadcast_to(mean.reshape(-1)[: x.shape[2]], (count, x.shape[2]))
        return masked
    noise = rng.standard_normal(x.shape).astype(np.float32)
    return (x + strength * np.broadcast_to(scale, x.shape[1:]) * noise).astype(np.float32)


def without(model: MultimodalModel, inputs: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """``inputs`` with modality ``name`` missing: left out for its placeholder, or set to its source mean."""
    if name in model.placeholders:
        return {m: x for m, x in inputs.items() if m != name}
    mean, _ = _statistics(model, name, inputs[name])
    return dict(inputs) | {name: np.broadcast_to(mean, inputs[name].shape).astype(np.float32)}


def robustness_curves(
    model: MultimodalModel,
    inputs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    score: Callable[[np.ndarray, np.ndarray], float],
    seed: int = 0,
) -> dict:
    """``clean``, ``missing`` (modality -> score) and ``noise`` (modality or ``'all'`` -> scores at
    :data:`STRENGTHS`) of ``model`` on ``inputs``; ``score(outputs, labels)`` is accuracy or minus MAE."""
    from crossfuse.train.loop import predict

    def evaluate(batch: Mapping[str, np.ndarray]) -> float:
        return score(predict(model, batch)[0], labels)

    names = sorted(inputs)
    result = {"clean": evaluate(inputs), "missing": {}, "noise": {}, "strengths": list(STRENGTHS)}
    if len(names) > 1:
        result["missing"] = {m: evaluate(without(model, inputs, m)) for m in names}
    for target in [*names, "all"] if len(names) > 1 else names:
        curve = []
        for k, strength in enumerate(STRENGTHS):
            rng = np.random.default_rng([seed, k, names.index(target) if target in names else len(names)])
            chosen = names if target == "all" else [target]
            noisy = {m: perturb(model, m, x, strength, rng) if m in chosen else x for m, x in inputs.items()}
            curve.append(evaluate(noisy))
        result["noise"][target] = curve
    return result


def relative_robustness(curve: list[float]) -> float:
    """MultiBench's relative robustness: the area under the curve over strengths 0 to 1 (trapezoids)."""
    values = np.asarray(curve, dtype=np.float64)
    return float(((values[1:] + values[:-1]) * 0.1 / 2).sum())


def effective_robustness(curve: list[float], reference: list[float], lower_is_better: bool = False) -> float:
    """MultiBench's effective robustness: ``sum_k f_k - (r_k + f_0 - r_0)``, how much better the curve
    holds up than the ``reference`` curve moved to the same clean performance; for an error curve
    (``lower_is_better``) the sign is turned, so positive always means more robust."""
    f, r = np.asarray(curve, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    value = float((f - (r + f[0] - r[0])).sum())
    return -value if lower_is_better else value
