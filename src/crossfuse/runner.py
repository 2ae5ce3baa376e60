"""One run end to end: ``run(config) = build -> fit -> evaluate -> write``."""

from __future__ import annotations

import os
import platform
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossfuse.config import RunConfig, load_config
from crossfuse.data.dataset import MultimodalDataset, Task, TaskSplit, split_task
from crossfuse.data.missing import (
    features_with_missing_values,
    missing_rows,
    missing_values,
    modalities_with_missing_rows,
)
from crossfuse.data.summary import rows_line, scaling_line
from crossfuse.errors import ConfigError, CrossfuseError, DataError
from crossfuse.evaluation.a_distance import proxy_a_distance
from crossfuse.evaluation.ablation import modality_ablation
from crossfuse.evaluation.warnings import collapse_warnings, regression_warnings, run_warnings
from crossfuse.model import MultimodalModel
from crossfuse.model import build_model as build_default_model
from crossfuse.normalize import NORMALIZATIONS, Standardize
from crossfuse.objective import (
    OBJECTIVES,
    REGRESSION_LOSSES,
    classification_metrics,
    regression_metrics,
)
from crossfuse.predictor import fills_in, model_card
from crossfuse.registry import FUSIONS, SELECTION_CRITERIA, TRANSFERS, check_option_types
from crossfuse.results import RunResult
from crossfuse.run_folder import claim_run_folder, release_claim, write_run_folder
from crossfuse.selection.base import ImportanceWeightedCriterion, SelectionCriterion
from crossfuse.train.distributed import distributed_context
from crossfuse.train.lifecycle import start_method
from crossfuse.train.loop import Trainer, TrainResult, accuracy, mean_absolute_error, predict
from crossfuse.train.state import BestEpoch
from crossfuse.train.stopping import Interrupted
from crossfuse.transfer.base import TransferMethod


def load_dataset(config: RunConfig) -> MultimodalDataset:
    """A dataset by name (``av-digits``) or a bring-your-own-data folder (only the rows of the domains
    the run names, when it names them: the others are never read)."""
    if config.data == "av-digits":
        from crossfuse.data.avdigits import load_av_digits

        if config.objective == "regression":
            raise ConfigError("objective 'regression': av-digits is a classification data set")
        return load_av_digits(config.task, config.source, config.target, seed=config.seed)
    from crossfuse.data.public import PUBLIC_DATASETS

    if config.data in PUBLIC_DATASETS:
        if config.objective == "regression":
            raise ConfigError(f"objective 'regression': {config.data} is a classification data set")
        return PUBLIC_DATASETS[config.data]()
    from crossfuse.data.folder import load_folder

    named = (config.source or []) + (config.target or [])
    return load_folder(config.data, config.objective, domains=named if config.source else None)


def resolve_device(name: str) -> torch.device:
    """``'auto'``: this process's GPU when there is one (``LOCAL_RANK`` under torchrun), else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine")
    return device


def check_names(config: RunConfig) -> None:
    """Refuse unknown method names before any data is loaded."""
    FUSIONS.get_or_refuse(config.fusion, "fusion")
    TRANSFERS.get_or_refuse(config.transfer, "transfer")
    SELECTION_CRITERIA.get_or_refuse(config.selection, "selection")
    if config.objective not in OBJECTIVES:
        raise ConfigError(f"objective {config.objective!r}: unknown (choose from {', '.join(OBJECTIVES)})")
    if config.regression_loss not in REGRESSION_LOSSES:
        raise ConfigError(
            f"regression_loss {config.regression_loss!r}: unknown "
            f"(choose from {', '.join(REGRESSION_LOSSES)})"
        )
    if config.normalization not in NORMALIZATIONS:
        raise ConfigError(
            f"normalization {config.normalization!r}: unknown (choose from {', '.join(NORMALIZATIONS)})"
        )


def choose_shots(rows: np.ndarray, labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` seeded rows of each class among ``rows`` (fewer where a class has fewer)."""
    rng = np.random.default_rng(seed + 7)
    chosen = [rng.permutation(rows[labels[rows] == c])[:per_class] for c in np.unique(labels[rows])]
    return np.sort(np.concatenate(chosen))


def prepare_task(
    config: RunConfig, unseen_target: bool | None = None
) -> tuple[MultimodalDataset, Task, TaskSplit]:
    """The dataset of ``config`` (only its chosen ``modalities``, when given), its task and the seeded
    split of its rows (each domain's rows mapped onto one reference's moments under ``--normalization
    domain``: :mod:`crossfuse.data.domain_moments`); ``unseen_target`` for a domain-generalisation
    method (no target row is trained on, and the task may have no target domain), by default what
    ``config``'s transfer method declares, so that a finished run's split is found again (robustness,
    feature pictures)."""
    if unseen_target is None:
        method = TRANSFERS.get_or_refuse(config.transfer, "transfer")
        unseen_target = bool(getattr(method, "domain_generalization", False))
    dataset = load_dataset(config)
    if config.modalities:
        unknown = sorted(set(config.modalities) - set(dataset.modalities))
        if unknown:
            known = ", ".join(sorted(dataset.modalities))
            raise ConfigError(f"modality {unknown[0]!r}: not in dataset {dataset.name!r} ({known})")
        dataset.modalities = {m: dataset.modalities[m] for m in config.modalities}
    task = dataset.resolve_task(config.task, config.source, config.target, require_target=not unseen_target)
    split = split_task(dataset, task, config.seed, unseen_target=unseen_target)
    if config.normalization == "domain":
        from crossfuse.data.domain_moments import match_domain_moments

        match_domain_moments(dataset, task, split)
    return dataset, task, split


def build_model(
    config: RunConfig, dataset: MultimodalDataset, rows: np.ndarray | None = None
) -> MultimodalModel:
    """The untrained default model that ``config`` describes for ``dataset``'s modalities and classes;
    the features with missing values among ``rows`` (the source training rows) get indicator columns
    (``config.missing_indicators``)."""
    indicators = (
        features_with_missing_values(dataset.modalities, rows)
        if config.missing_indicators and rows is not None and config.normalization != "none"
        else {}
    )
    return build_default_model(
        {m: x.shape[1:] for m, x in dataset.modalities.items()},
        dataset.n_classes,
        config.fusion,
        hidden_dim=config.hidden_dim,
        dropout=config.dropout,
        fusion_options=config.fusion_options,
        normalization=config.normalization,
        objective=dataset.objective,
        regression_loss=config.regression_loss,
        modality_dropout=config.modality_dropout,
        missing_modalities=modalities_with_missing_rows(dataset.modalities),
        n_targets=dataset.n_targets,
        missing_indicators=indicators,
        regression_margin=config.regression_margin,
    )


def check_given_model(dataset: MultimodalDataset, model: MultimodalModel) -> None:
    """Refuse, in one line, a model of the user's own that does not fit the data: a modality of the data
    it has no encoder for (it would be ignored without a word), samples of another shape than its
    normaliser was built for, or another number of classes than the data has (the extra outputs would
    never be trained)."""
    unused = sorted(set(dataset.modalities) - set(model.modalities))
    if unused:
        raise ConfigError(
            f"modality {unused[0]!r}: the data has it and the model has no encoder for it (the model takes "
            f"{', '.join(sorted(model.modalities))}); build it with every modality, or leave the others out "
            "with the modalities setting"
        )
    for m, normalizer in sorted(model.normalizers.items()):
        expected = getattr(normalizer, "sample_shape", None)
        shape = tuple(dataset.modalities[m].shape[1:]) if m in dataset.modalities else None
        if expected is not None and shape is not None and tuple(expected) != shape:
            raise ConfigError(
                f"modality {m!r}: the model was built for samples of shape {tuple(expected)}, the data's "
                f"are {shape}"
            )
    if dataset.objective == "classification" and model.n_outputs != dataset.n_classes:
        raise ConfigError(
            f"the model predicts {model.n_outputs} classes, the data has {dataset.n_classes} (build it with "
            f"n_classes={dataset.n_classes})"
        )


def check_missing_modalities(
    dataset: MultimodalDataset, model: MultimodalModel, log: Callable[[str], None]
) -> None:
    """Say which modalities some samples lack (every value NaN), and refuse a model without a placeholder
    for one of them (a user's own, built without ``missing_modalities``)."""
    for m in modalities_with_missing_rows(dataset.modalities):
        count = int(missing_rows(dataset.modalities[m]).sum())
        if m not in model.placeholders:
            raise ConfigError(
                f"modality {m!r} is missing (every value NaN) in {count} samples, and the model has no "
                f"placeholder for it: build it with missing_modalities=[{m!r}, ...]"
            )
        log(
            f"note: {count} of {len(dataset.labels)} samples lack modality {m!r} (every value NaN); a "
            "learned placeholder stands in for its encoding there"
        )


def check_missing_values(
    dataset: MultimodalDataset, model: MultimodalModel, log: Callable[[str], None]
) -> dict[str, int]:
    """Say how many values are missing (a NaN in part of a sample) in each modality, and refuse a model
    that cannot fill them in (``--normalization none``, or a user's own without
    :class:`~crossfuse.normalize.Standardize`); the count per modality that has any."""
    counts = missing_values(dataset.modalities)
    for m, (values, samples) in counts.items():
        if not fills_in(model, m):
            standardized = isinstance(model.normalizers[m], Standardize)
            raise ConfigError(
                f"modality {m!r} has {values} missing values (NaN) in {samples} samples, and the model "
                "cannot fill them in: "
                + (
                    "--normalization none keeps no training mean (use auto, feature or global)"
                    if standardized
                    else "its normalizer for it is not crossfuse.normalize.Standardize"
                )
            )
        unit = {2: "feature", 3: "frame feature"}.get(dataset.modalities[m].ndim, "channel")
        indicated = len(getattr(model.normalizers[m], "indicators", ()))
        log(
            f"note: modality {m!r} has {values} missing values (NaN) in {samples} of "
            f"{len(dataset.labels)} samples; each is filled in with its {unit}'s mean over the source "
            "training rows"
            + (
                f", and the {indicated} feature(s) with missing values there get an indicator column"
                if indicated
                else ""
            )
        )
    return {m: values for m, (values, _) in counts.items()}


def build_method(config: RunConfig) -> TransferMethod:
    """The transfer method of ``config`` with its options."""
    cls = TRANSFERS.get_or_refuse(config.transfer, "transfer")
    check_option_types(cls, config.transfer_options, f"transfer_options for {config.transfer!r}")
    try:
        return cls(**config.transfer_options)
    except TypeError as error:
        raise ConfigError(f"transfer_options for {config.transfer!r}: {error}") from None


def with_recipe(config: RunConfig, method: TransferMethod) -> RunConfig:
    """``config`` with the settings of the method's ``recipe`` that the user left at their defaults."""
    changes = {k: v for k, v in method.recipe.items() if k not in config.model_fields_set}
    return config.model_copy(update=changes) if changes else config


def source_domain_index(dataset: MultimodalDataset, task: Task, rows: np.ndarray) -> np.ndarray:
    """Each row's source domain as ``0 .. S-1`` in the order of ``task.source``."""
    order = {name: i for i, name in enumerate(task.source)}
    return np.array([order[name] for name in dataset.domains[rows]], dtype=np.int64)


def is_named(data: str) -> bool:
    """Whether ``data`` names a data set crossfuse builds (not a folder)."""
    from crossfuse.data.public import NAMED_DATASETS

    return data in NAMED_DATASETS


def task_name(config: RunConfig) -> str:
    """The name a run's task goes by: the dataset's named task, or ``SOURCE-to-TARGET`` for domains given
    by hand (several joined by ``+``)."""
    if not config.source and not config.target:
        return config.task or "default"
    source = "+".join(config.source or ["default"])
    target = "+".join(config.target or (["default"] if is_named(config.data) else ["none"]))
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{source}-to-{target}")


@dataclass
class Run:
    """What :func:`build` assembles for a run: data, split, model, transfer method and criterion."""

    config: RunConfig
    dataset: MultimodalDataset
    task: Task
    split: TaskSplit
    model: MultimodalModel
    method: TransferMethod
    criterion: SelectionCriterion
    device: torch.device
    shots: np.ndarray | None
    target_test: np.ndarray
    recorders: dict = field(default_factory=dict)
    #: Values filled in with training means, per modality that has some (:func:`check_missing_values`).
    filled_values: dict = field(default_factory=dict)

    def rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return self.dataset.rows(indices)


def domain_normalization_note(task: Task, split: TaskSplit) -> str:
    """What ``--normalization domain`` did to a run's domains, in one line for its log."""
    if len(split.target_train):
        targets = "the target's" if len(task.target) == 1 else f"the {len(task.target)} targets' pooled"
        return (
            f"note: --normalization domain: each of {len(task.source)} source domain(s)"
            + (" and each target domain" if len(task.target) > 1 else "")
            + f" standardised by its own statistics, the model keeping {targets} statistics"
        )
    return (
        f"note: --normalization domain without target rows to train on: each of {len(task.source)} source "
        "domain(s) standardised by its own statistics, the model keeping the pooled source's statistics"
        + (
            "; each held-out domain by the statistics of its own scored rows (their values, not their labels)"
            if len(split.target_test)
            else ""
        )
    )


def refuse_one_class(dataset: MultimodalDataset, task: Task, source_labels: np.ndarray) -> None:
    """Refuse, in one line, source training rows whose labels are all one class: a classifier learns
    nothing from them, and its target accuracy would only be that class's share of the target."""
    present = np.unique(source_labels[source_labels >= 0])
    if len(present) == 1:
        name = dataset.classes[int(present[0])]
        raise DataError(
            f"labels: every labelled training row of the source ({', '.join(task.source)}) has class "
            f"{name!r}; a classifier needs at least two classes to learn from (check --source or the labels)"
        )


def build(config: RunConfig, model: MultimodalModel | None = None, log: Callable[[str], None] = print) -> Run:
    """Load the data, split it, build the model (or take ``model``), start the transfer method and fit
    the selection criterion: everything before the first training step."""
    check_names(config)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)  # noqa: NPY002 - seeds code that draws from numpy's global generator
    method = build_method(config)
    config = with_recipe(config, method)
    dataset, task, split = prepare_task(config, unseen_target=method.domain_generalization)
    labels = dataset.labels
    if dataset.objective == "classification":
        refuse_one_class(dataset, task, labels[split.source_train])
    if config.objective == "auto" and dataset.objective == "regression":
        log(
            "note: the labels are float values, so this is a regression (--objective classification: classes)"
        )
    if config.normalization == "domain":
        log(domain_normalization_note(task, split))
    if model is None:
        model = build_model(config, dataset, split.source_train)
    else:
        check_given_model(dataset, model)
    check_missing_modalities(dataset, model, log)
    filled_values = check_missing_values(dataset, model, log)
    source, target = dataset.rows(split.source_train), dataset.rows(split.target_train)
    if model.objective.kind != dataset.objective:
        raise ConfigError(
            f"the model predicts for {model.objective.kind}, the data's labels are for {dataset.objective}"
        )
    predicted = getattr(model.objective, "n_targets", 1) if dataset.objective == "regression" else 1
    if predicted != dataset.n_targets:
        raise ConfigError(
            f"the model predicts {predicted} value(s) a sample, the data has {dataset.n_targets} targets "
            f"(build it with crossfuse.objective.Regression(n_targets={dataset.n_targets}))"
        )
    if dataset.objective == "regression":
        if not method.supports_regression:
            raise ConfigError(f"--transfer {config.transfer}: {method.regression_refusal}")
        if config.class_weight != "none":
            raise ConfigError(f"class_weight {config.class_weight!r}: a regression has no classes to weigh")
        model.objective.fit(labels[split.source_train])
    elif config.class_weight != "none":
        if method.class_weight_refusal:
            raise ConfigError(
                f"class_weight {config.class_weight!r}: --transfer {config.transfer}: "
                f"{method.class_weight_refusal}; leave class_weight at none"
            )
        if config.class_weight == "balanced":
            model.objective.balance(labels[split.source_train], dataset.n_classes)
        else:
            model.objective.weigh(config.class_weight, dataset.classes)
    normalizers = getattr(model, "normalizers", {})
    for m, kind in dataset.standardization_kinds.items():
        normalizer = normalizers[m] if m in normalizers else None
        if isinstance(normalizer, Standardize) and normalizer.mode == "domain":
            normalizer.kind = kind  # the kind the domains were mapped with
    start_method(
        method,
        model,
        source,
        target,
        config.seed,
        n_source_domains=len(task.source),
        source_labels=None if dataset.objective == "regression" else labels[split.source_train],
    )
    device = resolve_device(config.device)
    model.to(device)
    method.to(device)
    target_test, shots = split.target_test, None
    if method.needs_target_shots:
        labelled_target = split.target_train[dataset.labelled[split.target_train]]
        if len(labelled_target) == 0:
            raise ConfigError(
                f"--transfer {config.transfer} needs labelled target samples, and no target training row "
                "has a label"
            )
        per_class = config.target_shots or 5
        if dataset.objective == "regression":  # no classes: ten times as many rows, at random
            shots = choose_shots(
                labelled_target, np.zeros(len(labels), dtype=int), 10 * per_class, config.seed
            )
        else:
            shots = choose_shots(labelled_target, labels, per_class, config.seed)
        target_test = np.setdiff1d(target_test, shots)  # the shots' labels were seen: never score them
    elif config.target_shots is not None:
        raise ConfigError(
            f"target_shots: only a method that uses labelled target samples takes it (got {config.transfer})"
        )
    criterion = SELECTION_CRITERIA.get_or_refuse(config.selection, "selection")()
    criterion.objective, criterion.has_target = dataset.objective, bool(task.target)
    if len(split.target_train) == 0 and (criterion.needs_target or criterion.needs_weights):
        raise ConfigError(
            f"selection {config.selection!r} reads unlabelled target rows, and --transfer {config.transfer} "
            "trains without any: use source-val (validation on a share of every source domain)"
        )
    if dataset.objective == "regression" and criterion.classification_only:
        raise ConfigError(
            f"selection {config.selection!r} reads class probabilities: it cannot score a regression"
        )
    source_val = dataset.rows(split.source_val)
    criterion.fit(source, target, source_val, config.seed)
    recorders = (
        recording_criteria(dataset.objective, source, target, source_val, config.seed, bool(task.target))
        if config.record_selection
        else {}
    )
    # said once nothing in the settings is refused, so that a refusal stays the only line
    log(rows_line(dataset, split))
    fitted = {m: n for m, n in normalizers.items() if isinstance(n, Standardize)}
    if fitted:
        shapes = {m: n.sample_shape for m, n in fitted.items()}
        log(scaling_line(shapes, {m: n.kind for m, n in fitted.items()}, config.normalization))
    return Run(
        config, dataset, task, split, model, method, criterion, device, shots, target_test, recorders,
        filled_values,
    )  # fmt: skip


def recording_criteria(
    objective: str, source, target, source_val, seed: int, has_target: bool = True
) -> dict[str, SelectionCriterion]:
    """Every registered criterion that can score ``objective``, fitted (the importance weights once, shared
    by the criteria that use them); ``has_target``: whether the run has a target domain."""
    recorders: dict[str, SelectionCriterion] = {}
    weights = None
    no_target = len(next(iter(target.values()))) == 0
    for name in SELECTION_CRITERIA:
        criterion = SELECTION_CRITERIA[name]()
        criterion.objective, criterion.has_target = objective, has_target
        if objective == "regression" and criterion.classification_only:
            continue
        if no_target and (criterion.needs_target or criterion.needs_weights):
            continue
        if isinstance(criterion, ImportanceWeightedCriterion) and weights is not None:
            criterion.weights = weights
        else:
            criterion.fit(source, target, source_val, seed)
            if isinstance(criterion, ImportanceWeightedCriterion):
                weights = criterion.weights
        recorders[name] = criterion
    return recorders


def choices_by_criterion(history: list[dict], recorders: dict, n_validation: int, metric: str) -> dict:
    """Which epoch each recorded criterion would have kept (the latest within its tolerance of its best,
    as the trainer keeps) and that epoch's target score (the oracle's view, for the regret table)."""
    choices = {}
    for name, criterion in recorders.items():
        best = BestEpoch()
        for record in history:
            score = record.get("criteria", {}).get(name)
            if score is not None:
                best.update(record["epoch"], score, lambda b, c=criterion: c.tolerance(b, n_validation))
        if best.best_epoch:
            chosen = history[best.best_epoch - 1]
            choices[name] = {"epoch": best.best_epoch, f"target_{metric}": chosen.get(f"target_{metric}")}
    return choices


def trainer(
    run: Run,
    out: Path | None = None,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, int], None] | None = None,
) -> Trainer:
    """The :class:`~crossfuse.train.loop.Trainer` of the run (checkpointing to ``out``); only rank 0 logs."""
    rank = distributed_context()[0]
    labels, split = run.dataset.labels, run.split
    return Trainer(
        run.model,
        run.method,
        (run.rows(split.source_train), labels[split.source_train]),
        (run.rows(split.source_val), labels[split.source_val]),
        run.rows(split.target_train),
        (run.rows(run.target_test), labels[run.target_test]),
        run.config.train_settings(),
        seed=run.config.seed,
        log=log if rank == 0 else (lambda line: None),
        criterion=run.criterion,
        checkpoint_dir=out,
        on_step=on_step if rank == 0 else None,
        record_criteria=run.recorders,
        source_domains=source_domain_index(run.dataset, run.task, split.source_train),
    )


def fit(
    run: Run,
    out: Path | None = None,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train the run's model (resuming a checkpoint in ``out``), then the method's after-training phase."""
    fitted = trainer(run, out, log, on_step)
    result = fitted.fit()
    labels = run.dataset.labels
    source = fitted.source
    shots = None if run.shots is None else (run.rows(run.shots), labels[run.shots])
    run.method.after_training(run.model, shots, source, run.config.lr, run.config.seed, target=fitted.target)
    return result


def evaluate(run: Run, result: TrainResult, log: Callable[[str], None] = print) -> RunResult:
    """Score the trained model on the target test rows and gather the run's record."""
    config, dataset, split, labels = run.config, run.dataset, run.split, run.dataset.labels
    regression = dataset.objective == "regression"
    target_test = run.target_test
    target_probabilities, target_features = predict(run.model, run.rows(target_test))
    target_labels = labels[target_test]
    measure = mean_absolute_error if regression else accuracy
    metric = "mae" if regression else "accuracy"
    final = measure(target_probabilities, target_labels)
    val_predictions, source_features = predict(run.model, run.rows(split.source_val))
    scored = dataset.labelled[target_test]
    ablation = (
        modality_ablation(run.model, run.rows(target_test[scored]), target_labels[scored], measure)
        if scored.any()
        else {}
    )
    chosen = result.history[result.best_epoch - 1]
    oracle = [r[f"target_{metric}"] for r in result.history if r.get(f"target_{metric}") is not None]
    if final is not None:  # a phase after training (fine-tuning, SHOT) changes the model the history saw
        oracle.append(final)
    best_oracle = (min(oracle) if regression else max(oracle)) if oracle else None
    if regression:
        val_targets = labels[split.source_val]
        baseline = float(np.abs(val_targets - labels[split.source_train].mean(0)).mean())
        warnings = regression_warnings(result.history, chosen, baseline)
        measures = {
            f"target_{k}": v for k, v in regression_metrics(target_probabilities, target_labels).items()
        }
        measures |= {"oracle_target_mae": best_oracle, "source_val_mae": chosen["source_val_mae"]}
    else:
        warnings = run_warnings(result.history, result.val_outputs, labels[split.source_val])
        # a domain-generalisation run has no target training rows: its scored rows, unlabelled, stand in
        if len(split.target_train):
            unlabelled, _ = predict(run.model, run.rows(split.target_train))
        else:
            unlabelled = target_probabilities
        warnings += collapse_warnings(unlabelled, labels[split.source_train])
        measures = {
            f"target_{k}": v for k, v in classification_metrics(target_probabilities, target_labels).items()
        }
    if not run.task.target:
        log("note: no target domain: the model is scored on each source domain's validation rows")
    elif final is None:
        log(f"note: no scored target row has a label, so target {metric} is not measured (null)")
    elif not scored.all():
        log(f"note: target {metric} counts the {int(scored.sum())} of {len(scored)} scored rows with a label")
    per_domain = None
    if len(run.task.target) > 1:
        domain_of_row = dataset.domains[target_test]
        per_domain = {
            name: measure(target_probabilities[domain_of_row == name], target_labels[domain_of_row == name])
            for name in run.task.target
        }
    if len(run.task.source) > 1:
        domain_of_row, val_labels = dataset.domains[split.source_val], labels[split.source_val]
        measures[f"source_val_{metric}_per_domain"] = {
            name: measure(val_predictions[domain_of_row == name], val_labels[domain_of_row == name])
            for name in run.task.source
        }
    for line in warnings:
        log(f"WARNING: {line}")
    if run.recorders:
        choices = choices_by_criterion(result.history, run.recorders, len(split.source_val), metric)
        measures = measures | {"selection_by_criterion": choices}
    return RunResult(
        dataset=dataset.name,
        task=task_name(config),
        source_domains=list(run.task.source),
        target_domains=list(run.task.target),
        fusion=config.fusion,
        transfer=config.transfer,
        seed=config.seed,
        selection=config.selection,
        n_classes=dataset.n_classes,
        objective=dataset.objective,
        target_accuracy=None if regression else final,
        oracle_target_accuracy=None if regression else best_oracle,
        source_val_accuracy=None if regression else chosen["source_val_accuracy"],
        best_epoch=result.best_epoch,
        epochs_run=result.epochs_run,
        train_seconds=round(result.train_seconds, 3),
        n_source_train=len(split.source_train),
        n_source_val=len(split.source_val),
        n_target_train=len(split.target_train),
        n_target_test=len(target_test),
        n_target_test_labelled=int(scored.sum()),
        n_target_shots=0 if run.shots is None else len(run.shots),
        proxy_a_distance=(
            round(proxy_a_distance(source_features, target_features, config.seed), 4)
            if len(target_test)
            else None
        ),
        warnings=warnings,
        world_size=distributed_context()[1],
        device=str(run.device),
        torch=torch.__version__,
        machine=platform.machine(),
        target_accuracy_per_domain=None if regression else per_domain,
        extra=measures
        | run.method.run_metrics()
        | ({"target_mae_per_domain": per_domain} if regression and per_domain else {})
        # only when some were filled: complete data keeps the metrics it had
        | ({"missing_values": run.filled_values} if run.filled_values else {})
        | {f"target_{metric}_without_{m}": value for m, value in ablation.items()},
    )


def run(
    config: RunConfig | Mapping[str, Any],
    out: Path | None = None,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, int], None] | None = None,
    model: MultimodalModel | None = None,
) -> RunResult:
    """Run ``config`` (with the user's own ``model``, when given); write the run folder to ``out``.
    ``config`` is a :class:`~crossfuse.config.RunConfig`, or a mapping of its settings (checked as a YAML
    file's are).

    With ``out``, a run that already finished there is not repeated (its record is returned), and an
    interrupted one resumes from its checkpoint. Data, task and settings are checked before ``out`` is
    claimed, and a run that fails leaves nothing there that would block the corrected command. Under
    torchrun, training is distributed and only rank 0 writes.
    """
    if isinstance(config, Mapping):
        config = load_config(None, dict(config))
    check_names(config)
    rank = distributed_context()[0]
    out = Path(out) if out is not None else None
    if out is not None and (out / "metrics.json").exists() and (out / "config.yaml").exists():
        finished = claim_run_folder(out, config, rank)
        if finished is not None:
            log(f"{out}: this run already finished; not repeating it")
            return RunResult.from_metrics(finished)
    setup = build(config, model, log)
    claimed = False
    if out is not None:
        existed = (out / "config.yaml").exists()
        claim_run_folder(out, config, rank)
        claimed = not existed and rank == 0
    try:
        trained = fit(setup, out, log, on_step)
        result = evaluate(setup, trained, log)
    except Interrupted:
        raise
    except BaseException as error:
        if out is not None:
            release_claim(out, claimed, resumable=not isinstance(error, CrossfuseError))
        raise
    if out is not None and rank == 0:
        # the card describes the model as built: with the settings the method's recipe changed
        card = model_card(setup.config, setup.dataset, setup.model) | {"custom_model": model is not None}
        write_run_folder(out, config, result.metrics(), trained.history, setup.model, card)
    return result


def run_experiment(
    config: RunConfig,
    out: Path | None,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, int], None] | None = None,
) -> dict:
    """:func:`run`, returning the ``metrics.json`` mapping."""
    return run(config, out, log, on_step).metrics()
