"""Determinism, resume after SIGTERM, finished runs kept, and torchrun against one process."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from crossfuse.config import load_config
from crossfuse.errors import ConfigError
from crossfuse.runner import run_experiment

VOLATILE = {"train_seconds"}


def stable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def options(folder, **extra):
    return dict(data=str(folder), source=["a"], target=["b"], **extra)


def test_same_seed_gives_the_same_numbers(toy_folder, tmp_path):
    first = run_experiment(
        load_config(None, options(toy_folder, transfer="dann", epochs=3)), tmp_path / "1", log=str
    )
    again = run_experiment(
        load_config(None, options(toy_folder, transfer="dann", epochs=3)), tmp_path / "2", log=str
    )
    other = run_experiment(
        load_config(None, options(toy_folder, transfer="dann", epochs=3, seed=1)), tmp_path / "3", log=str
    )
    assert stable(first) == stable(again)
    assert stable(first) != stable(other)
    a, b = (
        load_file(str(tmp_path / "1" / "model.safetensors")),
        load_file(str(tmp_path / "2" / "model.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finished_run_is_not_repeated_and_other_settings_are_refused(toy_folder, tmp_path):
    out = tmp_path / "run"
    config = load_config(None, options(toy_folder, epochs=2))
    first = run_experiment(config, out, log=str)
    stamp = (out / "metrics.json").stat().st_mtime_ns
    lines = []
    assert run_experiment(config, out, log=lines.append) == first
    assert "already finished" in lines[0]
    with pytest.raises(ConfigError, match="epochs differ"):
        run_experiment(load_config(None, options(toy_folder, epochs=3)), out, log=str)
    assert (out / "metrics.json").stat().st_mtime_ns == stamp


def cli(*args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "crossfuse", *map(str, args)], env=env, **kwargs)


def test_sigterm_leaves_a_checkpoint_and_the_resumed_run_matches_an_uninterrupted_one(toy_folder, tmp_path):
    args = [
        "run",
        "--data",
        toy_folder,
        "--source",
        "a",
        "--target",
        "b",
        "--transfer",
        "dann",
        "--epochs",
        12,
    ]
    interrupted = tmp_path / "interrupted"
    process = cli(*args, "--out", interrupted, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = interrupted / "checkpoint.safetensors"
    for _ in range(2400):  # poll for up to two minutes
        if checkpoint.exists():
            break
        try:
            process.wait(timeout=0.05)
            break  # it ended before writing a checkpoint: the assertion below reports it
        except subprocess.TimeoutExpired:
            pass
    assert checkpoint.exists(), "no checkpoint was written"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    assert checkpoint.exists() and not (interrupted / "metrics.json").exists()
    resumed = cli(*args, "--out", interrupted, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resumed from" in err
    straight = tmp_path / "straight"
    plain = cli(*args, "--out", straight, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = plain.communicate(timeout=300)
    assert plain.returncode == 0, err
    a = json.loads((interrupted / "metrics.json").read_text())
    b = json.loads((straight / "metrics.json").read_text())
    assert stable(a) == stable(b)
    assert json.loads((interrupted / "history.json").read_text()) == json.loads(
        (straight / "history.json").read_text()
    )
    assert not checkpoint.exists(), "a finished run keeps its model, not its training checkpoint"


@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun"
)
def test_two_processes_train_the_model_one_process_trains(toy_folder, tmp_path):
    config = tmp_path / "config.yaml"
    # 100 steps: long enough for a rounding difference to flip a near-tie in the sequence encoder's
    # max-pool (it did, with dropout 0.1); test_distributed.py compares every method over 6 steps.
    config.write_text("dropout: 0.0\nepochs: 2\n")
    args = ["--data", toy_folder, "--source", "a", "--target", "b", "--config", config]
    one = subprocess.run(
        [sys.executable, "-m", "crossfuse", "run", *map(str, args), "--out", tmp_path / "one"],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert one.returncode == 0, one.stderr
    torchrun = Path(sys.executable).parent / "torchrun"
    two = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "crossfuse",
            "run",
            *map(str, args),
            "--out",
            tmp_path / "two",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert set(a) == set(b)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["world_size"] == 2


# --- resuming every method -------------------------------------------------------------------------


class StopTraining(Exception):
    pass


def toy_trainer(transfer: str, checkpoint_dir: Path, weight_averaging: str = "none", on_step=None):
    """A 3-epoch run of four steps an epoch on the distributed test's toy data (two source domains, by
    alternate rows, for a domain-generalisation method)."""
    from crossfuse.train.loop import Trainer, TrainSettings
    from tests.distributed_steps import toy_data, toy_model

    checkpoint_dir.mkdir(exist_ok=True)
    source, labels, target = toy_data()
    model, method, domains = toy_model("late", transfer, {}, source, labels, target)
    settings = TrainSettings(
        epochs=3,
        batch_size=16,
        min_steps_per_epoch=4,
        early_stopping=False,
        weight_averaging=weight_averaging,
    )
    trainer = Trainer(
        model, method, (source, labels), (source, labels), target, (target, labels), settings, seed=0,
        log=lambda _: None, checkpoint_dir=checkpoint_dir, on_step=on_step, source_domains=domains,
    )  # fmt: skip
    return trainer, model


def resumable_cases():
    from crossfuse.transfer import TRANSFERS

    # finetune's second phase needs labelled target shots, which the runner sets aside
    methods = [(name, "none") for name in TRANSFERS.names() if name != "finetune"]
    return methods + [("dann", "ema"), ("dann", "swa")]


@pytest.mark.parametrize(("transfer", "weight_averaging"), resumable_cases())
def test_every_method_resumed_from_its_checkpoint_trains_what_an_uninterrupted_run_trains(
    transfer, weight_averaging, tmp_path
):
    """Stopped in the second epoch, resumed from the checkpoint of the first: the same history and the
    same weights, to the bit (method parameters and buffers, optimiser moments, averages, RNG)."""
    trainer, model = toy_trainer(transfer, tmp_path / "straight", weight_averaging)
    straight = trainer.fit()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    per_epoch = trainer.steps_per_epoch

    def stop_in_the_second_epoch(step: int, total: int) -> None:
        if step == per_epoch + 2:
            raise StopTraining

    with pytest.raises(StopTraining):
        toy_trainer(transfer, tmp_path / "stopped", weight_averaging, stop_in_the_second_epoch)[0].fit()
    assert (tmp_path / "stopped" / "checkpoint.safetensors").exists()
    steps: list[int] = []
    trainer, model = toy_trainer(
        transfer, tmp_path / "stopped", weight_averaging, lambda k, _: steps.append(k)
    )
    resumed = trainer.fit()
    assert steps[0] == per_epoch + 1 and len(steps) == 2 * per_epoch  # it went on from the second epoch
    assert json.dumps(resumed.history, default=str) == json.dumps(straight.history, default=str)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_a_run_folder_from_before_a_new_setting_still_counts_as_the_same_run(toy_folder, tmp_path):
    """A setting added later (``class_weight``) is absent from an older ``config.yaml``: read as its
    default, the finished run is returned, not refused; a non-default value is still refused."""
    import yaml

    out = tmp_path / "run"
    config = load_config(None, options(toy_folder, epochs=2))
    first = run_experiment(config, out, log=str)
    older = yaml.safe_load((out / "config.yaml").read_text())
    del older["class_weight"]
    (out / "config.yaml").write_text(yaml.safe_dump(older, sort_keys=True))
    assert run_experiment(config, out, log=str) == first
    balanced = config.model_copy(update={"class_weight": "balanced"})
    with pytest.raises(ConfigError, match="class_weight differ"):
        run_experiment(balanced, out, log=str)
