"""The ``crossfuse`` command: ``run``, ``datasets``.

Bad input ends with one line on stderr naming the file, field or modality and the problem, and exit
status 2; never a traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import Abort, Exit, TyperException

from crossfuse.errors import CrossfuseError, DataError
from crossfuse.startup import import_torch

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Multimodal fusion x cross-domain transfer."
)
datasets_app = typer.Typer(no_args_is_help=True, help="List, verify and prepare datasets.")
app.add_typer(datasets_app, name="datasets")


class progress_bar:  # noqa: N801 - used like a function that returns a context manager
    """A rich progress bar on stderr, shown only at a terminal (logs and CI get plain lines)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            "training",
            BarColumn(),
            "{task.completed}/{task.total} steps",
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.console = self.progress.console
        self.task = self.progress.add_task("training", total=None)

    def advance_to(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def _split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def _seeds(value: str | None) -> list[int] | None:
    """``--seeds 0,1,2`` as integers, or one line naming the part that is not one."""
    parts = _split(value)
    if parts is None:
        return None
    bad = [part for part in parts if not part.lstrip("-").isdigit()]
    if bad:
        raise CrossfuseError(f"--seeds {value!r}: {bad[0]!r} is not an integer (e.g. --seeds 0,1,2)")
    return [int(part) for part in parts]


def _default(field: str) -> str:
    from crossfuse.config import RunConfig

    return f" (default: {RunConfig.model_fields[field].default})"


def _names(names) -> str:
    """A registry's names (read without importing its methods) or a plain list's, for help texts."""
    return ", ".join(names.listed_names() if hasattr(names, "listed_names") else names)


def _key_values(pairs: list[str] | None, option: str) -> dict:
    """``['rank=8', 'align=both']`` -> ``{'rank': 8, 'align': 'both'}``; values read as YAML scalars."""
    import yaml

    values = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CrossfuseError(f"{option} {pair!r}: expected KEY=VALUE")
        try:
            values[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            values[key.strip()] = value
    return values


from crossfuse.config import NORMALIZATIONS  # noqa: E402
from crossfuse.registry import FUSIONS, SELECTION_CRITERIA, TRANSFERS  # noqa: E402


@app.command()
def run(
    data: Annotated[
        str, typer.Option(help="Dataset name (av-digits) or a bring-your-own-data folder." + _default("data"))
    ] = None,
    task: Annotated[str, typer.Option(help="A named task of the dataset (default: default).")] = None,
    source: Annotated[str, typer.Option(help="Comma-separated source domains.")] = None,
    target: Annotated[str, typer.Option(help="Comma-separated target domains.")] = None,
    modalities: Annotated[
        str, typer.Option(help="Comma-separated modalities to use (default: every one of the data set).")
    ] = None,
    fusion: Annotated[str, typer.Option(help=f"One of {_names(FUSIONS)}." + _default("fusion"))] = None,
    transfer: Annotated[str, typer.Option(help=f"One of {_names(TRANSFERS)}." + _default("transfer"))] = None,
    seed: Annotated[int, typer.Option(help="Seeds every random source." + _default("seed"))] = None,
    out: Annotated[Path, typer.Option(help="Run folder (metrics.json, config, log, model).")] = None,
    config: Annotated[
        Path, typer.Option(help="YAML file of settings; options given here override it.")
    ] = None,
    epochs: Annotated[
        int, typer.Option(help="Most epochs (early stopping may end sooner)." + _default("epochs"))
    ] = None,
    lr: Annotated[float, typer.Option(help="Learning rate (AdamW)." + _default("lr"))] = None,
    batch_size: Annotated[
        int, typer.Option(help="Samples a batch, per domain." + _default("batch_size"))
    ] = None,
    hidden_dim: Annotated[
        int, typer.Option(help="Size of each encoding and of the fused vector." + _default("hidden_dim"))
    ] = None,
    dropout: Annotated[float, typer.Option(help="Dropout rate." + _default("dropout"))] = None,
    modality_dropout: Annotated[
        float,
        typer.Option(
            help="Chance that a training sample loses a modality (a learned placeholder stands in; the model "
            "then predicts without it)." + _default("modality_dropout")
        ),
    ] = None,
    weight_decay: Annotated[
        float, typer.Option(help="AdamW weight decay." + _default("weight_decay"))
    ] = None,
    patience: Annotated[
        int,
        typer.Option(
            help="Epochs without progress before source-only training stops." + _default("patience")
        ),
    ] = None,
    normalization: Annotated[
        str,
        typer.Option(
            help=f"Input scaling: {_names(NORMALIZATIONS)} (domain: each domain by its own statistics; "
            "quantile: each vector feature through its training quantiles to a normal, for tables)."
            + _default("normalization")
        ),
    ] = None,
    missing_indicators: Annotated[
        bool,
        typer.Option(
            "--missing-indicators/--no-missing-indicators",
            help="Give each vector feature with missing values (NaN) in the source training rows an "
            "indicator column, 1 where the value is missing." + _default("missing_indicators"),
        ),
    ] = None,
    weight_averaging: Annotated[
        str,
        typer.Option(
            help="none; ema: score and keep an exponential moving average of the weights; swa: their uniform "
            "average over the last three quarters of the steps." + _default("weight_averaging")
        ),
    ] = None,
    ema_decay: Annotated[
        float, typer.Option(help="Decay of the moving average." + _default("ema_decay"))
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            help="classification, regression, or auto (regression for float labels)." + _default("objective")
        ),
    ] = None,
    regression_loss: Annotated[
        str, typer.Option(help="mse or l1, for regression." + _default("regression_loss"))
    ] = None,
    regression_margin: Annotated[
        float,
        typer.Option(
            help="A regression's predictions stay within the training targets' range widened by this share "
            "of it on either side; inf: not clipped." + _default("regression_margin")
        ),
    ] = None,
    class_weight: Annotated[
        str,
        typer.Option(
            help="none; balanced: each class of the source weighs n / (K n_c) in the classification loss, "
            "as scikit-learn's class_weight='balanced'." + _default("class_weight")
        ),
    ] = None,
    fusion_option: Annotated[
        list[str], typer.Option(help="KEY=VALUE for the fusion module, e.g. rank=8; repeatable.")
    ] = None,
    transfer_option: Annotated[
        list[str], typer.Option(help="KEY=VALUE for the transfer method, e.g. align=both; repeatable.")
    ] = None,
    selection: Annotated[
        str,
        typer.Option(
            help=f"Label-free checkpoint choice: {_names(SELECTION_CRITERIA)}." + _default("selection")
        ),
    ] = None,
    target_shots: Annotated[
        int, typer.Option(help="Labelled target samples per class (finetune) (default: 5).")
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto (a GPU when there is one), cpu, cuda or cuda:N." + _default("device"))
    ] = None,
) -> None:
    """Train one fusion x transfer combination and report source-validation and target accuracy."""
    import_torch()
    from crossfuse.config import load_config
    from crossfuse.runner import run as run_config
    from crossfuse.train.distributed import distributed_context
    from crossfuse.train.stopping import Interrupted

    overrides = dict(
        data=data,
        task=task,
        source=_split(source),
        target=_split(target),
        modalities=_split(modalities),
        fusion=fusion,
        transfer=transfer,
        seed=seed,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        hidden_dim=hidden_dim,
        dropout=dropout,
        modality_dropout=modality_dropout,
        weight_decay=weight_decay,
        patience=patience,
        normalization=normalization,
        missing_indicators=missing_indicators,
        weight_averaging=weight_averaging,
        ema_decay=ema_decay,
        objective=objective,
        regression_loss=regression_loss,
        regression_margin=regression_margin,
        class_weight=class_weight,
        selection=selection,
        target_shots=target_shots,
        device=device,
    )
    settings = load_config(config, overrides)
    if fusion_option or transfer_option:
        settings = settings.model_copy(
            update={
                "fusion_options": settings.fusion_options | _key_values(fusion_option, "--fusion-option"),
                "transfer_options": settings.transfer_options
                | _key_values(transfer_option, "--transfer-option"),
            }
        )
    log_lines: list[str] = []

    bar = progress_bar() if sys.stderr.isatty() else None

    def log(line: str) -> None:
        log_lines.append(line)
        if bar is not None:
            bar.console.print(line)
        else:
            typer.echo(line, err=True)

    try:
        with bar or contextlib.nullcontext():
            result = run_config(settings, out, log=log, on_step=bar.advance_to if bar else None)
    except Interrupted as stop:
        where = f"; the checkpoint in {out} resumes it: run the same command again" if out else ""
        typer.echo(f"crossfuse: interrupted by {stop}{where}", err=True)
        sys.exit(128 + stop.signal_number)
    if out is not None and distributed_context()[0] == 0:
        with open(Path(out) / "log.txt", "a") as handle:
            handle.write("\n".join(log_lines) + "\n")
    typer.echo(result.summary())
    for warning in result.warnings:
        typer.echo(f"WARNING: {warning}")
    if out is None:
        typer.echo(json.dumps(result.metrics(), indent=2))


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="A finished run folder (holds model.json).")],
    data: Annotated[
        Path, typer.Option(help="Folder with modalities/<name>.npy; labels.npy and domains.npy optional.")
    ],
    out: Annotated[Path, typer.Option(help="CSV file to write: one row a sample.")] = Path("predictions.csv"),
    standardize: Annotated[
        bool,
        typer.Option(
            help="Standardise the folder's rows by their own statistics first (its domain's moments, as "
            "crossfuse adapt --method standardize; the run folder is not changed)."
        ),
    ] = False,
) -> None:
    """Predict every sample of a folder with a trained model; print accuracy when labels are there."""
    import_torch()
    from crossfuse.data.folder import read_modalities
    from crossfuse.prediction_table import predict_folder
    from crossfuse.predictor import load

    model = load(run)
    if standardize:
        if not data.is_dir():
            raise DataError(f"{data}: not a folder (it needs modalities/<name>.npy)")
        model.standardize_on(read_modalities(data)[0])
    score, n = predict_folder(model, data, out)
    where = f"{n} predictions written to {out}"
    name = "mean absolute error" if model.objective == "regression" else "accuracy"
    typer.echo(where if score is None else f"{where}; {name} {score:.4f} on the labelled rows")


@app.command()
def robustness(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    reference: Annotated[
        Path, typer.Option(help="A run to compare with (effective robustness), e.g. late fusion.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds the noise.")] = 0,
) -> None:
    """Score a trained model with each modality missing and under rising noise (MultiBench's curves)."""
    import_torch()
    from crossfuse.robustness_report import ROBUSTNESS, describe, measure_run, plot_curves

    result = measure_run(run, seed)
    other = measure_run(reference, seed) if reference is not None else None
    plot_curves(result["noise"], result["strengths"], result["metric"], run / "robustness.png", str(run))
    for line in describe(result, other):
        typer.echo(line)
    typer.echo(f"written: {run / ROBUSTNESS}, {run / 'robustness.png'}")


@app.command()
def adapt(
    run: Annotated[Path, typer.Argument(help="A finished run folder (its model is the source model).")],
    data: Annotated[
        Path, typer.Option(help="Folder of unlabelled target rows (modalities/; labels optional).")
    ],
    out: Annotated[Path, typer.Option(help="New run folder for the adapted model.")],
    epochs: Annotated[int, typer.Option(help="Adaptation epochs.")] = 10,
    lr: Annotated[float, typer.Option(help="Learning rate of the source phase (SHOT uses a tenth).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seeds the adaptation.")] = 0,
    method: Annotated[
        str,
        typer.Option(
            help="shot (SHOT's source-free phase), standardize (the input standardisation re-fitted on the "
            "target's rows, no training) or standardize+shot."
        ),
    ] = "shot",
) -> None:
    """Source-free adaptation (SHOT, or the target's own input statistics) of a trained model to a target
    folder: no source data needed."""
    import_torch()
    from crossfuse.source_free import adapt_run

    score, n = adapt_run(run, data, out, epochs=epochs, lr=lr, seed=seed, method=method)
    where = f"adapted ({method}) on {n} target rows; model in {out}"
    regression = json.loads((out / "model.json").read_text()).get("objective") == "regression"
    name = "mean absolute error" if regression else "accuracy"
    typer.echo(where if score is None else f"{where}; {name} {score:.4f} on the labelled rows")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A finished run folder (holds model.json).")],
    out: Annotated[Path, typer.Option(help="File to write (a torch.export program, .pt2).")] = Path(
        "model.pt2"
    ),
) -> None:
    """Export a trained model for serving without crossfuse (``torch.export.load(FILE).module()``)."""
    import_torch()
    from crossfuse.predictor import load

    model = load(run)
    model.export(out)
    returns = (
        f"the predicted values, one column a target ({model.n_targets})"
        if model.objective == "regression"
        else f"probabilities of the classes {model.classes}"
    )
    typer.echo(
        f"exported to {out}: call torch.export.load('{out}').module()(*tensors) with float32 tensors for "
        f"{', '.join(sorted(model.modalities))} (in that order, channels first); it returns {returns}"
    )


@app.command()
def bench(
    suite: Annotated[
        str,
        typer.Option(
            help="quick, full, or one data set's suite: av-digits (its four tasks), two-moons, "
            "digits-halves, usps-mnist (every adaptation method, late fusion, 3 seeds)."
        ),
    ] = "quick",
    out: Annotated[
        Path, typer.Option(help="Benchmark folder; rerunning with the same folder resumes.")
    ] = Path("runs/bench"),
    data: Annotated[
        str,
        typer.Option(
            help="av-digits, two-moons, digits-halves, usps-mnist or a bring-your-own-data folder "
            "(default: the suite's, else av-digits)."
        ),
    ] = None,
    source: Annotated[str, typer.Option(help="Source domains (for a folder).")] = None,
    target: Annotated[str, typer.Option(help="Target domains (for a folder).")] = None,
    fusions: Annotated[str, typer.Option(help="Comma-separated fusions (default: the suite's).")] = None,
    transfers: Annotated[str, typer.Option(help="Comma-separated transfers (default: the suite's).")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (default: 0,1,2).")] = None,
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks (default: the suite's).")] = None,
    jobs: Annotated[int, typer.Option(help="Runs at a time, each its own process.")] = 2,
    epochs: Annotated[int, typer.Option(help="Most epochs per run.")] = None,
    config: Annotated[
        Path, typer.Option(help="YAML file of run settings for every run (lr, batch_size, options...).")
    ] = None,
    robustness: Annotated[
        bool, typer.Option(help="Also measure every run under missing and noisy modalities.")
    ] = False,
    protocol: Annotated[
        str,
        typer.Option(
            help="none, or leave-one-domain-out: each domain in turn is held out unseen and the runs train "
            "on the others (default transfers: erm and every domain-generalisation method; fusion: late)."
        ),
    ] = "none",
    domains: Annotated[
        str,
        typer.Option(
            help="Leave-one-domain-out: comma-separated domains (default: all of a folder's); for av-digits "
            "speakers (default), image-sources, or both (four speakers, each with its own image source)."
        ),
    ] = None,
    validation: Annotated[
        str,
        typer.Option(
            help="Leave-one-domain-out: training-domain (each run picks its epoch on the sources), or "
            "leave-one-source-out (also pick a method per held-out domain from extra runs that hold out "
            "each source in turn)."
        ),
    ] = "training-domain",
) -> None:
    """Run a fusion x transfer x seed x task grid, then write results.csv and report.md with plots."""
    from dataclasses import replace

    from crossfuse.bench.grid import finished, resolve_suite, run_grid, suite_settings, usable_methods
    from crossfuse.bench.protocol import (
        PROTOCOLS,
        dg_methods,
        held_out_domains,
        leave_one_out_specs,
        write_protocol,
    )
    from crossfuse.bench.report import build_report
    from crossfuse.config import load_config
    from crossfuse.errors import ConfigError
    from crossfuse.runner import check_names, is_named, task_name

    given = {"data": data, "source": _split(source), "target": _split(target), "epochs": epochs}
    from_file = load_config(config, {}).model_dump(exclude_unset=True) if config is not None else {}
    # the protocol has its own grid: a suite's settings (the quick suite's epoch cap) are not its own
    fixed = suite_settings(suite) if protocol == "none" else {"record_selection": True}
    base = fixed | from_file | {k: v for k, v in given.items() if v is not None}
    base.setdefault("data", "av-digits")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
    if protocol == "leave-one-domain-out":
        held_out = held_out_domains(base["data"], _split(domains))
        chosen = _split(transfers) or usable_methods(dg_methods(), base["data"])
        specs = leave_one_out_specs(
            held_out,
            _split(fusions) or ["late"],
            chosen,
            _seeds(seeds) or [0, 1, 2],
            validation,
        )
        write_protocol(out, protocol, held_out, validation)
    else:
        specs = resolve_suite(
            suite,
            _split(fusions),
            _split(transfers),
            _seeds(seeds),
            _split(tasks),
        )
    if not is_named(base["data"]) and not Path(base["data"]).is_dir():
        from crossfuse.errors import DataError

        # said before the grid starts, not by each of its runs
        raise DataError(
            f"{base['data']}: not a folder (give a dataset name such as av-digits, or a data folder)"
        )
    if not is_named(base["data"]) and tasks:
        raise ConfigError(
            f"--tasks {tasks!r}: a data folder has one task, the domains given by --source and --target "
            "(tasks name a named data set's, such as av-digits')"
        )
    if not is_named(base.get("data", "av-digits")) and protocol == "none":
        # A folder has one task, the domains given: runs are named after it.
        name = task_name(load_config(None, base))
        specs = list({(s.fusion, s.transfer, s.seed): replace(s, task=name) for s in specs}.values())
    for spec in specs:  # refuse a bad name before any run starts
        check_names(load_config(None, dict(base, fusion=spec.fusion, transfer=spec.transfer)))
        if spec.source and base.get("data", "av-digits") == "av-digits":
            from crossfuse.data.avdigits import parse_domain

            for domain in spec.source + spec.target:
                parse_domain(domain)
    from crossfuse.train.stopping import Interrupted, Terminated

    started = time.perf_counter()
    try:
        run_grid(specs, out, base, jobs=jobs, log=lambda line: typer.echo(line, err=True))
    except Interrupted as stop:
        done = sum(finished(out, spec) for spec in specs)
        typer.echo(
            f"crossfuse: interrupted by {stop}; {done} of {len(specs)} runs finished in {out}, the runs in "
            "progress wrote checkpoints: run the same command again to continue",
            err=True,
        )
        sys.exit(128 + stop.signal_number)
    try:
        if robustness:
            from crossfuse.robustness_report import measure_run

            for spec in specs:
                measure_run(out / "runs" / spec.name)
        report = build_report(out)
    except (Terminated, KeyboardInterrupt) as stop:
        import signal

        number = getattr(stop, "signal_number", signal.SIGINT)
        typer.echo(
            f"crossfuse: interrupted by {signal.Signals(number).name} after all {len(specs)} runs finished "
            f"({out / 'results.csv'}); the report was not written: run the same command again, or "
            f"'crossfuse report {out}'",
            err=True,
        )
        sys.exit(128 + number)
    typer.echo(
        f"{len(specs)} runs in {out / 'results.csv'}; report {report} ({time.perf_counter() - started:.0f} s)"
    )


@app.command()
def report(out: Annotated[Path, typer.Argument(help="A benchmark folder holding results.csv.")]) -> None:
    """Rebuild report.md and its plots from an existing results.csv."""
    from crossfuse.bench.report import build_report

    typer.echo(f"report written to {build_report(out)}")


@datasets_app.command("list")
def datasets_list() -> None:
    """Known datasets, their files and tasks."""
    from crossfuse.data.avdigits import TASKS
    from crossfuse.data.registry import UPSTREAM, data_root, registry

    typer.echo(f"data root: {data_root()}")
    for name in UPSTREAM:
        typer.echo(f"  {name}: {len(registry(name))} files")
    typer.echo("av-digits tasks:")
    for name, task in TASKS.items():
        typer.echo(f"  {name}: {task.description}")


@datasets_app.command("verify")
def datasets_verify() -> None:
    """Check every registered file under the data root against its sha256."""
    from crossfuse.data.registry import UPSTREAM, verify_dataset

    problems = [p for name in UPSTREAM for p in verify_dataset(name)]
    for problem in problems[:20]:
        typer.echo(problem, err=True)
    if problems:
        raise CrossfuseError(
            f"{len(problems)} dataset files missing or corrupt (run 'crossfuse datasets prepare')"
        )
    typer.echo("all dataset files present and verified")


@datasets_app.command("prepare")
def datasets_prepare(name: Annotated[str, typer.Argument(help="Dataset to prepare.")] = "av-digits") -> None:
    """Download (if missing), verify, and compute the cached features of a dataset."""
    if name != "av-digits":
        raise CrossfuseError(f"dataset {name!r}: only 'av-digits' can be prepared")
    from crossfuse.data.avdigits import prepare

    typer.echo(f"av-digits ready; features cached in {prepare()}")


def entry_point() -> None:
    """The ``crossfuse`` command: :func:`main`, then, after a success, an exit that skips the interpreter's
    teardown (freeing torch's modules took about a second of every run). The exit handlers that libraries
    and plug-ins registered still run, the output is flushed, and every file the command wrote is closed
    by then."""
    try:
        main()
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    atexit._run_exitfuncs()  # what plug-ins and libraries asked to run at exit still runs
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a reader that went away (``crossfuse ... | head``): nothing left to tell it
            pass
    os._exit(0)


def main() -> None:
    from crossfuse.train.stopping import Terminated, sigterm_raises

    try:
        with sigterm_raises():
            code = app(standalone_mode=False)
    except Exit as stop:
        code = stop.exit_code
    except Terminated as stop:
        typer.echo("crossfuse: stopped by SIGTERM; run the same command again to finish", err=True)
        sys.exit(128 + stop.signal_number)
    except CrossfuseError as error:
        typer.echo(f"crossfuse: error: {error}", err=True)
        sys.exit(2)
    except (Abort, KeyboardInterrupt):
        typer.echo("crossfuse: interrupted", err=True)
        sys.exit(130)
    except TyperException as error:
        message = error.format_message().strip()
        if message:
            typer.echo(f"crossfuse: error: {message}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
