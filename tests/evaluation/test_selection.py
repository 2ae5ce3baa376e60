import numpy as np
import pytest

from crossfuse.evaluation.density_ratio import DensityRatio
from crossfuse.evaluation.selection import dev_risk, mean_entropy


def test_density_ratio_weights_by_hand():
    rng = np.random.default_rng(0)
    source = {"x": rng.normal(size=(300, 2))}
    target = {"x": rng.normal(loc=1.0, size=(150, 2))}
    ratio = DensityRatio(max_weight=10.0).fit(source, target)
    p = np.clip(ratio.target_probability(source), 1e-6, 1 - 1e-6)
    raw = np.minimum(10.0, (300 / 150) * p / (1 - p))
    np.testing.assert_allclose(ratio.weights(source), raw / raw.mean())
    assert ratio.weights(source).mean() == pytest.approx(1.0)
    toward_target = {"x": np.array([[1.5, 1.5], [-1.5, -1.5]])}
    weights = ratio.weights(toward_target)
    assert weights[0] > 1 > weights[1]


def test_dev_risk_by_hand():
    losses = np.array([0.1, 0.5, 2.0, 0.3])
    weights = np.array([0.5, 1.0, 2.0, 0.5])
    weighted = weights * losses
    eta = -np.cov(weighted, weights)[0, 1] / np.var(weights, ddof=1)
    assert dev_risk(losses, weights) == pytest.approx(weighted.mean() + eta * weights.mean() - eta)
    assert dev_risk(losses, np.ones(4)) == pytest.approx(losses.mean())


def test_mean_entropy():
    assert mean_entropy(np.array([[1.0, 0.0], [0.5, 0.5]])) == pytest.approx(np.log(2) / 2)


def test_flattened_weights_are_the_clipped_ratio_to_a_power():
    rng = np.random.default_rng(1)
    source, target = {"x": rng.normal(size=(200, 2))}, {"x": rng.normal(loc=0.8, size=(100, 2))}
    ratio = DensityRatio(max_weight=10.0, flatten=0.5).fit(source, target)
    p = np.clip(ratio.target_probability(source), 1e-6, 1 - 1e-6)
    raw = np.minimum(10.0, 2.0 * p / (1 - p)) ** 0.5
    np.testing.assert_allclose(ratio.weights(source), raw / raw.mean())
