"""The open library: public API, the trainer's parts on their own, plug-ins, the README's example."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import crossfuse
from crossfuse.errors import ConfigError
from crossfuse.model import build_model
from crossfuse.registry import FUSIONS, SELECTION_CRITERIA, TRANSFERS, Registry
from crossfuse.train.loop import Trainer, TrainSettings
from crossfuse.train.state import BestEpoch, TrainState
from crossfuse.transfer import SourceOnly
from tests.conftest import requires_data

README = Path(__file__).resolve().parents[1] / "README.md"


def test_public_api_names_resolve():
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", crossfuse.__version__)
    for name in crossfuse.__all__:
        assert getattr(crossfuse, name) is not None, name
    assert (
        crossfuse.TRANSFERS["dann"] is crossfuse.DANN and crossfuse.FUSIONS["lmf"] is crossfuse.LowRankFusion
    )


def test_registries_list_built_ins_in_order_and_refuse_unknown_names():
    assert list(FUSIONS) == ["early", "late", "hierarchical", "tfn", "lmf", "nuclear"]
    assert list(TRANSFERS)[:3] == ["source-only", "finetune", "iw"]
    assert list(SELECTION_CRITERIA) == ["source-val", "iwv", "dev", "entropy", "snd", "source-val-guarded"]
    with pytest.raises(ConfigError, match="transfer 'danm': unknown .*dann"):
        TRANSFERS.get_or_refuse("danm")
    registry = Registry("thing", "crossfuse.selection", "crossfuse.nothing")

    @registry.register("a")
    class A:
        pass

    with pytest.raises(ConfigError, match="registered twice"):
        registry.register("a")(type("B", (), {}))


# --- the trainer's parts ---------------------------------------------------------------------------


def test_best_epoch_keeps_the_latest_within_tolerance_and_counts_stale_epochs():
    best = BestEpoch()
    tolerance = lambda best_score: 0.05  # noqa: E731
    assert best.update(1, 0.80, tolerance) == (True, True)
    assert best.update(2, 0.90, tolerance) == (True, True)
    assert best.update(3, 0.86, tolerance) == (False, True)  # within 0.05 of 0.90: kept, later
    assert best.update(4, 0.70, tolerance) == (False, False)
    assert (best.best_score, best.best_epoch, best.stale) == (0.90, 3, 2)


def test_train_state_round_trips_through_its_checkpoint_record():
    state = TrainState(epoch=3, step_in_epoch=7, losses=[0.5, 0.25], history=[{"epoch": 1}], seconds=2.5)
    state.best = BestEpoch(0.9, 2, 1)
    record = json.loads(json.dumps(state.to_record()))
    assert TrainState.from_record(record) == state


def small_problem(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 64)
    x = (rng.normal(size=(64, 3)) + y[:, None]).astype(np.float32)
    return {"x": x}, y


def test_trainer_step_moves_every_parameter_and_returns_a_finite_loss():
    inputs, labels = small_problem()
    torch.manual_seed(0)
    model = build_model({"x": (3,)}, 2, "late", hidden_dim=8, dropout=0.0)
    model.fit_normalizers(inputs)
    settings = TrainSettings(epochs=1, batch_size=16, min_steps_per_epoch=1)
    trainer = Trainer(model, SourceOnly(), (inputs, labels), (inputs, labels), inputs, None, settings, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    loss = trainer.step(torch.arange(16), torch.arange(16), progress=0.0)
    assert np.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_trainer_trains_one_weight_buffer_and_gives_each_weight_its_memory_back_after_fit():
    """The trainer's optimiser steps all weights as views of one buffer; after fit, normal or not, every
    weight owns its memory again (safetensors refuses tensors that share it)."""
    from safetensors.torch import save_file

    from crossfuse.train.loop import TrainingDiverged

    inputs, labels = small_problem()
    model = build_model({"x": (3,)}, 2, "late", hidden_dim=8)
    model.fit_normalizers(inputs)
    settings = TrainSettings(epochs=2, batch_size=16, min_steps_per_epoch=1)
    trainer = Trainer(model, SourceOnly(), (inputs, labels), (inputs, labels), inputs, None, settings, seed=0)
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(storages) == 1 and trainer.optimizer.flat is not None
    trainer.fit()
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(storages) == len(list(model.parameters()))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, "/dev/null")
    diverging = build_model({"x": (3,)}, 2, "late", hidden_dim=8)
    diverging.fit_normalizers(inputs)
    settings = TrainSettings(epochs=2, batch_size=16, min_steps_per_epoch=1, lr=1e30)
    trainer = Trainer(diverging, SourceOnly(), (inputs, labels), (inputs, labels), inputs, None, settings, 0)
    with pytest.raises(TrainingDiverged):
        trainer.fit()
    assert len({p.untyped_storage().data_ptr() for p in diverging.parameters()}) > 1


def test_trainer_end_epoch_records_history_and_stops_after_patience():
    inputs, labels = small_problem()
    model = build_model({"x": (3,)}, 2, "late", hidden_dim=8)
    model.fit_normalizers(inputs)
    settings = TrainSettings(epochs=5, batch_size=16, patience=2, early_stopping=True)
    trainer = Trainer(
        model, SourceOnly(), (inputs, labels), (inputs, labels), inputs, (inputs, labels), settings, 0
    )
    trainer.state.losses = [0.7, 0.5]
    assert trainer.end_epoch(1) is False
    record = trainer.state.history[0]
    assert record["epoch"] == 1 and record["train_loss"] == pytest.approx(0.6)
    assert record["source-val"] == record["source_val_accuracy"] and "target_accuracy" in record
    trainer.state.losses = [0.5]
    assert trainer.end_epoch(2) is False  # the same model: no improvement, stale 1
    trainer.state.losses = [0.5]
    assert trainer.end_epoch(3) is True  # stale 2 = patience
    assert trainer.best_weights is not None and trainer.state.best.best_epoch == 3


# --- composition -----------------------------------------------------------------------------------


class TinyGRU(nn.Module):
    """A user's own sequence encoder with no ``output_dim`` attribute (its size is measured)."""

    def __init__(self, features: int, hidden: int = 5) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)

    def forward(self, x):
        return self.gru(x)[1][-1]


def test_a_users_encoder_replaces_the_default_for_one_modality():
    model = build_model({"seq": (7, 3), "vec": (4,)}, 3, "lmf", encoders={"seq": TinyGRU(3)}, hidden_dim=8)
    assert isinstance(model.encoders["seq"], TinyGRU)
    assert model.fusion.input_dims == {"seq": 5, "vec": 8}
    logits = model({"seq": torch.randn(2, 7, 3), "vec": torch.randn(2, 4)})
    assert logits.shape == (2, 3)
    with pytest.raises(ConfigError, match="no such modality"):
        build_model({"vec": (4,)}, 3, "late", encoders={"audio": TinyGRU(3)})
    with pytest.raises(ConfigError, match="takes the raw inputs"):
        build_model({"vec": (4,)}, 3, "early", encoders={"vec": nn.Linear(4, 2)})


def test_a_users_model_that_does_not_fit_the_data_is_refused_and_a_mapping_config_runs(toy_folder, tmp_path):
    settings = {"data": str(toy_folder), "source": ["a"], "target": ["b"], "epochs": 1}
    shapes = {"vec": (6,), "seq": (5, 4)}  # the toy folder's
    misfits = {
        "modality 'seq': the data has it and the model has no encoder": build_model({"vec": (6,)}, 3, "late"),
        r"modality 'vec': the model was built for samples of shape \(7,\)": build_model(
            {**shapes, "vec": (7,)}, 3, "late"
        ),
        r"the model predicts 5 classes, the data has 3 \(build it with n_classes=3\)": build_model(
            shapes, 5, "late"
        ),
    }
    for culprit, model in misfits.items():
        with pytest.raises(ConfigError, match=culprit):
            crossfuse.run(settings, model=model, log=lambda line: None)
    result = crossfuse.run(
        settings, tmp_path / "run", log=lambda line: None, model=build_model(shapes, 3, "late")
    )
    assert result.epochs_run == 1 and (tmp_path / "run" / "metrics.json").exists()
    # one domain named as text, as the command line takes --source a,b
    written = crossfuse.RunConfig(**{**settings, "source": "a", "modalities": "vec, seq"})
    assert written.source == ["a"] and written.modalities == ["vec", "seq"]


# --- plug-ins --------------------------------------------------------------------------------------

PLUGIN = '''
import torch
from crossfuse import TransferMethod


class MeanMatch(TransferMethod):
    """Match the means of the fused source and target batches."""

    def alignment_loss(self, outputs, progress):
        return (outputs.source_fused.mean(0) - outputs.target_fused.mean(0)).pow(2).sum()
'''


def test_a_plugin_transfer_runs_through_run_and_bench(tmp_path, toy_folder):
    site = tmp_path / "site"
    (site / "meanmatch_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "meanmatch_plugin.py").write_text(PLUGIN)
    info = site / "meanmatch_plugin-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: meanmatch-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[crossfuse.transfers]\nmean-match = meanmatch_plugin:MeanMatch\n")
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    common = ["--data", str(toy_folder), "--source", "a", "--target", "b", "--epochs", "1"]
    command = [sys.executable, "-m", "crossfuse", "run", *common, "--transfer", "mean-match"]
    done = subprocess.run([*command, "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["transfer"] == "mean-match"
    help_text = subprocess.run(
        [sys.executable, "-m", "crossfuse", "run", "--help"], env=env | {"COLUMNS": "300"},
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "mean-match" in help_text
    bench = [sys.executable, "-m", "crossfuse", "bench", *common, "--fusions", "late", "--seeds", "0"]
    bench += ["--transfers", "source-only,mean-match", "--jobs", "2", "--out", str(tmp_path / "bench")]
    done = subprocess.run(bench, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = (tmp_path / "bench" / "results.csv").read_text()
    assert ",mean-match," in results and ",source-only," in results


# --- the README's Python example -------------------------------------------------------------------


def readme_example() -> str:
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_is_short():
    assert len(readme_example().strip().splitlines()) <= 30


@requires_data
def test_readme_example_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    accuracy = float(re.search(r"target accuracy (\d\.\d+)", printed).group(1))
    assert 0.3 < accuracy <= 1.0


def test_weight_averaging_scores_and_keeps_the_moving_average_and_resumes(tmp_path, toy_folder):
    from crossfuse.config import load_config
    from crossfuse.runner import run_experiment

    inputs, labels = small_problem()
    torch.manual_seed(0)
    model = build_model({"x": (3,)}, 2, "late", hidden_dim=8, dropout=0.0)
    model.fit_normalizers(inputs)
    settings = TrainSettings(
        epochs=1, batch_size=16, min_steps_per_epoch=2, weight_averaging="ema", ema_decay=0.5
    )
    trainer = Trainer(model, SourceOnly(), (inputs, labels), (inputs, labels), inputs, None, settings, seed=0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.step(torch.arange(16), torch.arange(16), 0.0)
    after_one = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.step(torch.arange(16, 32), torch.arange(16), 0.5)
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            expected = 0.25 * start[key] + 0.25 * after_one[key] + 0.5 * value
            torch.testing.assert_close(trainer.average[key], expected)
    trainer.state.losses = [0.5]
    trainer.end_epoch(1)
    assert all(torch.equal(trainer.best_weights[k], trainer.average[k]) for k in trainer.average)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in model.state_dict().items())  # restored
    # the runner takes the setting from the configuration
    options = dict(data=str(toy_folder), source=["a"], target=["b"], epochs=3, weight_averaging="ema")
    first = run_experiment(load_config(None, options), tmp_path / "one", log=lambda line: None)
    assert first["target_accuracy"] is not None
