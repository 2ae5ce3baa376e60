"""``--class-weight balanced``: each source class weighs ``n / (K n_c)`` in the classification loss."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crossfuse.config import load_config
from crossfuse.errors import ConfigError
from crossfuse.objective import Classification
from crossfuse.runner import run
from tests.conftest import write_folder


def test_balanced_weights_and_the_weighted_loss_by_hand():
    objective = Classification().balance(np.array([0, 0, 0, 1, -1]), n_classes=3)  # -1: no label
    assert objective.class_weights.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1), 1.0])
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 3, requires_grad=True), torch.tensor([0, 0, 0, 1])
    a = np.array([2 / 3, 2 / 3, 2 / 3, 2.0])
    log_p = torch.log_softmax(logits, 1).detach().numpy()
    rows = -log_p[np.arange(4), labels.numpy()]
    assert objective.loss(logits, labels).item() == pytest.approx((a * rows).sum() / a.sum(), rel=1e-6)
    # with a method's row weights (importance weighting) the two multiply
    w = np.array([1.0, 2.0, 0.5, 1.0])
    found = objective.loss(logits, labels, torch.tensor(w, dtype=torch.float32)).item()
    assert found == pytest.approx((w * a * rows).sum() / (w * a).sum(), rel=1e-6)
    objective.loss(logits, labels).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # unbalanced, the loss is plain cross-entropy
    plain = F.cross_entropy(logits, labels).item()
    assert Classification().loss(logits, labels).item() == pytest.approx(plain)


def lopsided_folder(tmp_path, regression: bool = False):
    rng = np.random.default_rng(0)
    n = 200
    labels = (rng.random(n) < 0.2).astype(int)  # 20% of class 1
    vec = (rng.normal(size=(n, 4)) + 2 * labels[:, None]).astype(np.float32)
    other = rng.normal(size=(n, 2)).astype(np.float32)
    domains = np.where(np.arange(n) < n // 2, "a", "b")
    values = labels + rng.random(n) * 0.5 if regression else labels
    return write_folder(tmp_path / "lopsided", {"vec": vec, "other": other}, values, domains)


def test_a_balanced_run_trains_and_records_the_setting(tmp_path):
    folder = lopsided_folder(tmp_path)
    options = {"data": str(folder), "source": ["a"], "target": ["b"], "class_weight": "balanced"}
    config = load_config(None, options)
    result = run(config.model_copy(update={"epochs": 2}), tmp_path / "run", log=lambda _: None)
    assert result.target_accuracy > 0.7
    assert "class_weight: balanced" in (tmp_path / "run" / "config.yaml").read_text()


def test_class_weights_are_refused_where_they_mean_nothing(tmp_path):
    with pytest.raises(ConfigError, match=r"field 'class_weight': Input should be 'none' or 'balanced'"):
        load_config(None, {"class_weight": "inverse"})
    folder = lopsided_folder(tmp_path)
    options = {"data": str(folder), "source": ["a"], "target": ["b"], "class_weight": "balanced"}
    with pytest.raises(ConfigError, match="iwdan: it weighs the source's classes itself"):
        run(load_config(None, {**options, "transfer": "iwdan"}), None, log=lambda _: None)
    dg = {**options, "source": ["a", "b"], "target": None, "transfer": "vrex"}
    with pytest.raises(ConfigError, match="vrex: its per-domain risks are plain means"):
        run(load_config(None, dg), None, log=lambda _: None)
    regression = lopsided_folder(tmp_path / "r", regression=True)
    with pytest.raises(ConfigError, match="a regression has no classes"):
        run(load_config(None, {**options, "data": str(regression)}), None, log=lambda _: None)


def test_the_estimator_takes_class_weight_as_scikit_learn_spells_it(tmp_path):
    import crossfuse

    rng = np.random.default_rng(0)
    labels = (rng.random(120) < 0.2).astype(int)
    x = {"vec": (rng.normal(size=(120, 3)) + 2 * labels[:, None]).astype(np.float32)}
    estimator = crossfuse.MultimodalClassifier(epochs=1, class_weight="balanced", out=tmp_path / "est")
    estimator.fit(x, labels)
    assert estimator.get_params()["class_weight"] == "balanced"
    assert "class_weight: balanced" in (tmp_path / "est" / "config.yaml").read_text()
