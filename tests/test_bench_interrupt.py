"""A benchmark stopped by SIGTERM or SIGINT sent to its own process alone (as ``kill`` or a job scheduler
sends it) stops its workers too: one line, exit status 128 + the signal, checkpoints written, no worker
left running; the same command then finishes the grid."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from crossfuse.train.stopping import Interrupted
from tests.conftest import write_folder


def test_an_interruption_survives_the_trip_back_from_a_worker():
    stopped = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert stopped.signal_number == signal.SIGTERM and str(stopped) == "SIGTERM"


def processes_marked(mark: str) -> list[int]:
    """The processes whose environment holds ``mark`` (Linux: read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_bench_alone_stops_every_run_and_the_same_command_finishes(tmp_path, stop):
    rng = np.random.default_rng(0)
    n = 1600
    labels = rng.integers(0, 3, n)
    domains = np.where(np.arange(n) < n // 2, "a", "b")
    vec = rng.normal(size=(n, 6)) + np.eye(3)[labels] @ rng.normal(size=(3, 6)) * 2
    folder = write_folder(tmp_path / "data", {"vec": vec.astype(np.float32)}, labels, domains)
    out = tmp_path / "bench"
    command = [sys.executable, "-m", "crossfuse", "bench", "--data", str(folder), "--source", "a"]
    command += ["--target", "b", "--fusions", "late", "--transfers", "dann", "--seeds", "0,1"]
    command += ["--epochs", "12", "--jobs", "2", "--out", str(out)]
    mark = f"CROSSFUSE_TEST_MARK={uuid.uuid4().hex}"
    env = dict(os.environ, OMP_NUM_THREADS="1", CROSSFUSE_TEST_MARK=mark.split("=")[1])
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not list(out.glob("runs/*/checkpoint.safetensors")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bench.poll() is None, bench.communicate()[1]
    bench.send_signal(stop)
    _, err = bench.communicate(timeout=120)
    assert bench.returncode == 128 + stop, err
    last = err.strip().splitlines()[-1]
    assert (
        last.startswith(f"crossfuse: interrupted by {signal.Signals(stop).name}; ") and "Traceback" not in err
    )
    assert "run the same command again" in last
    time.sleep(0.5)
    assert processes_marked(mark) == []  # no worker left training on its own
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr
    runs = sorted(out.glob("runs/*/metrics.json"))
    assert len(runs) == 2
    assert all(json.loads(p.read_text())["epochs_run"] == 12 for p in runs)


def in_process(monkeypatch, capsys, argv: list[str]) -> tuple[int, str]:
    from crossfuse.cli import main

    monkeypatch.setattr(sys, "argv", ["crossfuse", *argv])
    with pytest.raises(SystemExit) as stop:
        main()
    return stop.value.code, capsys.readouterr().err


def sigterm_to_self(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)  # the handler's exception ends the sleep
    raise AssertionError("SIGTERM did not stop the command")


def test_sigterm_while_the_report_is_written_says_every_run_is_kept(monkeypatch, capsys, tmp_path):
    from crossfuse.bench import grid

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(grid, "_run_one", lambda spec, base, run_dir: {"target_accuracy": 0.5})
    monkeypatch.setattr(grid, "write_results", lambda out: None)
    monkeypatch.setattr("crossfuse.bench.report.build_report", sigterm_to_self)
    argv = ["bench", "--fusions", "late", "--transfers", "dann", "--seeds", "0,1", "--jobs", "1"]
    code, err = in_process(monkeypatch, capsys, [*argv, "--out", str(tmp_path / "bench")])
    assert code == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM after all 2 runs finished" in err
    assert f"'crossfuse report {tmp_path / 'bench'}'" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_sigterm_outside_training_gives_one_line_and_status_143(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("crossfuse.runner.run", sigterm_to_self)
    code, err = in_process(monkeypatch, capsys, ["run", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert code == 128 + signal.SIGTERM
    assert err.strip().splitlines() == ["crossfuse: stopped by SIGTERM; run the same command again to finish"]
