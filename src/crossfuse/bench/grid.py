"""The benchmark grid: which runs, where each writes, and skipping the ones already finished.

Every run writes its own folder ``OUT/runs/<task>-<fusion>-<transfer>-seed<k>/`` and ``metrics.json``
last and atomically, so a run counts as finished exactly when that file exists. Re-running the same
command skips finished runs and keeps their rows; an interruption loses at most the runs in progress.
``results.csv`` is rebuilt from the run folders after every finished run.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from crossfuse.errors import ConfigError
from crossfuse.results import RunResult
from crossfuse.train.stopping import Interrupted, StopRequests

SUITES = {
    "quick": {
        "fusions": ["early", "late", "tfn", "lmf"],
        "transfers": ["source-only", "dann", "mixup"],
        "seeds": [0, 1, 2],
        "tasks": ["default"],
        # Fewer epochs than a run's default (40), so 36 runs fit in 10 minutes on 2 cores:
        # at 40 they took 11.6 minutes here.
        "settings": {"epochs": 25},
    },
    "full": {
        # None: every registered name (built-ins and plug-ins), read from the registries; the
        # domain-generalisation methods have their own protocol (bench --protocol leave-one-domain-out).
        "fusions": None,
        "transfers": None,
        "seeds": [0, 1, 2],
        "tasks": ["default", "speakers", "sklearn"],
        "settings": {},
    },
}
# One suite a data set, so that no default is tuned to one of them: every adaptation method the data's
# modalities allow, late fusion, three seeds, label-free selection.
DATASET_SUITES = {
    "av-digits": ["default", "speakers", "writers", "sklearn"],
    "two-moons": ["default"],
    "digits-halves": ["default"],
    "usps-mnist": ["default"],
}
for _name, _tasks in DATASET_SUITES.items():
    SUITES[_name] = {
        "fusions": ["late"],
        "transfers": None,
        "seeds": [0, 1, 2],
        "tasks": _tasks,
        "settings": {"data": _name},
    }

COLUMNS = [
    "task",
    "fusion",
    "transfer",
    "seed",
    "target_accuracy",
    "oracle_target_accuracy",
    "source_val_accuracy",
    "selection",
    "train_seconds",
    "best_epoch",
    "epochs_run",
    "proxy_a_distance",
    "dataset",
    "n_classes",
    "warnings",
    "target",
]
#: The columns a report cannot do without.
REQUIRED_COLUMNS = COLUMNS[:7]


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid; ``source``/``target``, when given, name its domains (a leave-one-domain-out
    fold), and ``task`` then only names the run."""

    task: str
    fusion: str
    transfer: str
    seed: int
    source: tuple[str, ...] = ()
    target: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.task}-{self.fusion}-{self.transfer}-seed{self.seed}"


def grid(
    fusions: Iterable[str], transfers: Iterable[str], seeds: Iterable[int], tasks: Iterable[str]
) -> list[RunSpec]:
    return [RunSpec(t, f, m, s) for t in tasks for f in fusions for m in transfers for s in seeds]


def finished(out: Path, spec: RunSpec) -> bool:
    return (out / "runs" / spec.name / "metrics.json").exists()


def collect_rows(out: Path) -> list[dict[str, Any]]:
    """One row per finished run folder, in a stable order."""
    rows = []
    for path in sorted((out / "runs").glob("*/metrics.json")):
        row = RunResult.from_metrics(json.loads(path.read_text())).row()
        rows.append(row | {"target": row.get("target_domains", "")})
    return rows


def write_results(out: Path) -> Path:
    """Rewrite ``results.csv`` from the finished run folders (atomically)."""
    rows = collect_rows(out)
    extra = sorted(
        {k for row in rows for k in row if k not in COLUMNS and not isinstance(row[k], (list, dict))}
    )
    path = out / "results.csv"
    partial = out / ".results.csv.partial"
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS + extra, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)
    return path


#: Set in a worker process by :func:`_start_worker`: the benchmark's stop event.
_stop_event = None


def _start_worker(stop_event) -> None:
    """A worker's start: it keeps the benchmark's stop event, and a SIGTERM or SIGINT that arrives outside
    training is recorded for the next training loop to honour (:class:`StopRequests`) instead of killing
    the worker mid-run, which would break the pool and print a traceback."""
    global _stop_event
    _stop_event = stop_event

    def record(number, frame) -> None:
        StopRequests.pending = number

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, record)


def _run_one(spec: RunSpec, base: dict[str, Any], run_dir: str) -> dict | None:
    """One run of the grid in this process; ``None`` when the benchmark was stopped before it began."""
    if _stop_event is not None and _stop_event.is_set():
        return None
    from crossfuse.startup import import_torch

    import_torch()  # the worker's first run: collector paused while torch loads (a no-op after)
    import torch

    torch.set_num_threads(1)
    from crossfuse.config import load_config
    from crossfuse.runner import run_experiment

    values = dict(base, task=spec.task, fusion=spec.fusion, transfer=spec.transfer, seed=spec.seed)
    if spec.source:
        values |= {"source": list(spec.source), "target": list(spec.target)}
    from crossfuse.runner import is_named

    if not is_named(values.get("data", "av-digits")) or spec.source:
        values.pop("task")
    config = load_config(None, values)
    lines: list[str] = []
    metrics = run_experiment(config, Path(run_dir), log=lines.append)
    (Path(run_dir) / "log.txt").write_text("\n".join(lines) + "\n")
    return metrics


def outcome(metrics: dict) -> str:
    """One run's result in a progress line."""
    accuracy, error = metrics.get("target_accuracy"), metrics.get("target_mae")
    if accuracy is None and error is not None:  # a regression
        line = f"target MAE {error:.4g}"
    else:
        line = "target " + ("n/a" if accuracy is None else f"{accuracy:.4f}")
    return line + (f" (flagged: {metrics['warnings'][0]})" if metrics.get("warnings") else "")


def run_grid(
    specs: list[RunSpec],
    out: Path,
    base: dict[str, Any],
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> list[RunSpec]:
    """Run every unfinished spec (``jobs`` processes at a time); return the specs that were run."""
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in specs if not finished(out, s)]
    done = len(specs) - len(todo)
    log(f"{done} of {len(specs)} runs already finished; {len(todo)} to run with {jobs} process(es)")
    if not todo:
        write_results(out)
        return []
    if jobs <= 1:
        for i, spec in enumerate(todo, 1):
            metrics = _run_one(spec, base, str(out / "runs" / spec.name))
            write_results(out)
            log(f"[{i}/{len(todo)}] {spec.name}: {outcome(metrics)}")
        return todo
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    todo = longest_first(todo)
    context = get_context("spawn")
    stop_event = context.Event()
    with (
        ProcessPoolExecutor(jobs, context, initializer=_start_worker, initargs=(stop_event,)) as pool,
        ForwardedStops(stop_event) as stops,
    ):
        futures = {pool.submit(_run_one, s, base, str(out / "runs" / s.name)): s for s in todo}
        completed = 0
        for future in as_completed(futures):
            try:
                metrics = future.result()
            except Interrupted as stopped:  # its checkpoint is written: the same command resumes it
                stops.received = stops.received or stopped.signal_number
                continue
            if metrics is None:  # skipped: the benchmark was stopping
                continue
            completed += 1
            write_results(out)
            log(f"[{completed}/{len(todo)}] {futures[future].name}: {outcome(metrics)}")
    if stops.received is not None:
        raise Interrupted(stops.received)
    return todo


def longest_first(specs: list[RunSpec]) -> list[RunSpec]:
    """The runs that follow their whole schedule (adaptation) before those that may stop early
    (source-only), grid order otherwise: the longest runs first, so that the processes finish together
    rather than one waiting on a long last run. A run's result does not depend on when it runs."""
    from crossfuse.registry import TRANSFERS

    def stops_early(spec: RunSpec) -> bool:
        method = TRANSFERS[spec.transfer]
        return method.stops_early if method.stops_early is not None else not method.uses_target

    return sorted(specs, key=stops_early)


def modality_count(data: str) -> int:
    """How many modalities a data set has (AV-Digits: audio and image), without loading a folder."""
    from crossfuse.data.public import PUBLIC_DATASETS

    if data == "av-digits":
        return 2
    if data in PUBLIC_DATASETS:
        return len(PUBLIC_DATASETS[data]().modalities)
    return len(list((Path(data) / "modalities").glob("*.npy")))


def usable_methods(names: list[str], data: str) -> list[str]:
    """The methods of ``names`` whose maths the data set's modalities allow (``min_modalities``)."""
    from crossfuse.registry import TRANSFERS

    count = modality_count(data)
    return [n for n in names if TRANSFERS[n].min_modalities <= count]


def suite_settings(suite: str) -> dict[str, Any]:
    """Run settings a suite fixes (e.g. the quick suite's epoch cap). Every benchmark run records which
    epoch each label-free criterion would have chosen (the report's regret table)."""
    if suite not in SUITES:
        raise ConfigError(f"suite {suite!r}: unknown (choose from {', '.join(SUITES)})")
    return dict(SUITES[suite]["settings"]) | {"record_selection": True}


def resolve_suite(
    suite: str,
    fusions: list[str] | None,
    transfers: list[str] | None,
    seeds: list[int] | None,
    tasks: list[str] | None,
) -> list[RunSpec]:
    if suite not in SUITES:
        raise ConfigError(f"suite {suite!r}: unknown (choose from {', '.join(SUITES)})")
    from crossfuse.registry import FUSIONS, TRANSFERS

    chosen = SUITES[suite]
    adaptation = [n for n in TRANSFERS.names() if not TRANSFERS[n].domain_generalization]
    adaptation = usable_methods(adaptation, chosen["settings"].get("data", "av-digits"))
    return grid(
        fusions or chosen["fusions"] or FUSIONS.names(),
        transfers or chosen["transfers"] or adaptation,
        seeds or chosen["seeds"],
        tasks or chosen["tasks"],
    )


class ForwardedStops(StopRequests):
    """In the benchmark's own process, while its workers run: a SIGTERM or SIGINT sets the stop event
    (a worker skips the runs not yet begun) and is passed on to every worker (a run in training writes its
    checkpoint and stops), so that a signal sent to this process alone, as ``kill`` or a job scheduler
    sends it, stops the whole benchmark as Ctrl-C in a terminal does; ``received`` is the signal. Main
    thread only, like any signal handler."""

    def __init__(self, stop_event) -> None:
        super().__init__()
        self.stop_event = stop_event

    def _handle(self, number, frame) -> None:
        self.received = self.received or number
        self.stop_event.set()
        for worker in multiprocessing.active_children():
            if worker.pid is not None:
                os.kill(worker.pid, number)
