"""One run end to end: data -> split -> model -> training -> evaluation -> run folder."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

from crossfuse.config import RunConfig
from crossfuse.data.dataset import MultimodalDataset, Task, TaskSplit, split_task
from crossfuse.errors import ConfigError, CrossfuseError
from crossfuse.evaluation.a_distance import proxy_a_distance
from crossfuse.evaluation.density_ratio import DensityRatio
from crossfuse.evaluation.selection import NEEDS_WEIGHTS, SELECTION_CRITERIA
from crossfuse.model import MultimodalModel
from crossfuse.predictor import MODEL_CARD, model_card
from crossfuse.train.checkpoint import CHECKPOINT
from crossfuse.train.distributed import distributed_context
from crossfuse.train.loop import Interrupted, TrainSettings, accuracy, predict, train
from crossfuse.transfer import TRANSFERS


def load_dataset(config: RunConfig) -> MultimodalDataset:
    """A dataset by name (``av-digits``) or a bring-your-own-data folder."""
    if config.data == "av-digits":
        from crossfuse.data.avdigits import load_av_digits

        return load_av_digits(config.task, config.source, config.target, seed=config.seed)
    from crossfuse.data.folder import load_folder

    return load_folder(config.data)


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
    from crossfuse.fusion import FUSIONS
    from crossfuse.normalize import NORMALIZATIONS

    for field, value, known in (
        ("fusion", config.fusion, FUSIONS),
        ("transfer", config.transfer, TRANSFERS),
        ("selection", config.selection, SELECTION_CRITERIA),
        ("normalization", config.normalization, NORMALIZATIONS),
    ):
        if value not in known:
            raise ConfigError(f"{field} {value!r}: unknown (choose from {', '.join(known)})")


def modality_ablation(model: MultimodalModel, inputs: dict[str, np.ndarray], labels: np.ndarray) -> dict:
    """Target accuracy with each modality removed at test time (set to its source-training mean, the
    input that the model's standardisation maps to zero)."""
    if len(inputs) < 2:
        return {}
    result = {}
    for m, normalizer in model.normalizers.items():
        removed = dict(inputs)
        removed[m] = np.broadcast_to(normalizer.mean.cpu().numpy(), inputs[m].shape).astype(np.float32)
        result[m] = round(accuracy(predict(model, removed)[0], labels), 4)
    return result


def choose_shots(rows: np.ndarray, labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` seeded rows of each class among ``rows`` (fewer where a class has fewer)."""
    rng = np.random.default_rng(seed + 7)
    chosen = [rng.permutation(rows[labels[rows] == c])[:per_class] for c in np.unique(labels[rows])]
    return np.sort(np.concatenate(chosen))


def prepare_task(config: RunConfig) -> tuple[MultimodalDataset, Task, TaskSplit]:
    """The dataset of ``config``, its task and the seeded split of its rows."""
    dataset = load_dataset(config)
    task = dataset.resolve_task(config.task, config.source, config.target)
    return dataset, task, split_task(dataset, task, config.seed)


def build_model(config: RunConfig, dataset: MultimodalDataset) -> MultimodalModel:
    """The untrained model that ``config`` describes for ``dataset``'s modalities and classes."""
    shapes = {m: x.shape[1:] for m, x in dataset.modalities.items()}
    try:
        return MultimodalModel(
            shapes,
            dataset.n_classes,
            config.fusion,
            config.hidden_dim,
            dropout=config.dropout,
            fusion_options=config.fusion_options,
            normalization=config.normalization,
        )
    except TypeError as error:
        raise ConfigError(f"fusion_options for {config.fusion!r}: {error}") from None


@torch.no_grad()
def feature_dims(model: MultimodalModel, inputs: dict[str, np.ndarray]) -> dict[str, int]:
    """``space -> size`` of each modality's encoding and of the fused representation (``'fused'``), found
    by running two rows of ``inputs`` through ``model``; what :meth:`TransferMethod.setup` takes."""
    probe = model.encode({m: torch.from_numpy(x[:2]) for m, x in inputs.items()})
    return {m: f.shape[1] for m, f in probe.items()} | {"fused": model.fuse(probe).shape[1]}


def build_method(config: RunConfig):
    """The transfer method of ``config`` (its name already checked by :func:`check_names`)."""
    try:
        return TRANSFERS[config.transfer](**config.transfer_options)
    except TypeError as error:
        raise ConfigError(f"transfer_options for {config.transfer!r}: {error}") from None


def atomic_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def claim_run_folder(out: Path, config: RunConfig, rank: int) -> dict | None:
    """Prepare ``out`` for ``config``: the finished metrics if this exact run already finished there, else
    ``None``. A folder holding a different run's settings is refused, so nothing finished is overwritten."""
    settings = yaml.safe_dump(config.model_dump(), sort_keys=True)
    saved = out / "config.yaml"
    if saved.exists():
        if saved.read_text() != settings:
            old = yaml.safe_load(saved.read_text()) or {}
            changed = sorted(
                k for k in set(old) | set(config.model_dump()) if old.get(k) != config.model_dump().get(k)
            )
            raise ConfigError(
                f"{out}: holds a run with other settings ({', '.join(changed)} differ); choose another --out"
            )
        if (out / "metrics.json").exists():
            return json.loads((out / "metrics.json").read_text())
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_text(saved, settings)
    return None


def task_name(config: RunConfig) -> str:
    """The name a run's task goes by: the dataset's named task, or ``SOURCE-to-TARGET`` for domains given
    by hand (several joined by ``+``)."""
    if not config.source and not config.target:
        return config.task or "default"
    source = "+".join(config.source or ["default"])
    target = "+".join(config.target or ["default"])
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{source}-to-{target}")


def chance_level(labels: np.ndarray) -> float:
    """Accuracy of always answering the most frequent class of ``labels``."""
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0


def run_warnings(history: list[dict], chosen: dict, chance: float, n_validation: int) -> list[str]:
    """What makes a finished run's numbers untrustworthy: a model at chance on its own source, or a
    training loss that exploded or never fell.

    "Near chance" is a source-validation accuracy at most ``chance + max(0.1 (1 - chance), 2 SE)``, with
    ``SE = sqrt(chance (1 - chance) / n_validation)``: within a tenth of the way from chance to perfect,
    or within two standard errors of chance, which a small validation set cannot tell apart from it.
    """
    warnings = []
    losses = [r["train_loss"] for r in history]
    accuracy_now = chosen["source_val_accuracy"]
    error = math.sqrt(chance * (1 - chance) / max(n_validation, 1))
    if accuracy_now <= chance + max(0.1 * (1 - chance), 2 * error):
        warnings.append(
            f"source-validation accuracy {accuracy_now:.3f} is near chance ({chance:.3f}, the most frequent "
            "class): the model did not learn the source task; do not trust its target accuracy"
        )
    if len(losses) > 1 and max(losses[1:]) > 10 * losses[0]:
        warnings.append(
            f"the training loss exploded (epoch 1: {losses[0]:.3g}, largest: {max(losses):.3g}); "
            "try a lower --lr or a smaller alignment weight"
        )
    elif len(losses) > 1 and losses[-1] >= losses[0]:
        warnings.append(
            f"the training loss did not fall ({losses[0]:.3g} in epoch 1, {losses[-1]:.3g} at the end)"
        )
    return warnings


def release_claim(out: Path, claimed: bool, resumable: bool) -> None:
    """After a failed run: remove what this run wrote to ``out``, so the corrected command can use it.

    A checkpoint is kept (with the settings it belongs to) when the run is ``resumable``: it failed for
    a reason outside its settings, and the same command continues it.
    """
    if not claimed or (out / "metrics.json").exists():
        return
    if resumable and (out / CHECKPOINT).exists():
        return
    (out / CHECKPOINT).unlink(missing_ok=True)
    (out / "config.yaml").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        out.rmdir()  # only when empty: never a user's other files


def run_experiment(
    config: RunConfig,
    out: Path | None,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, int], None] | None = None,
) -> dict:
    """Run ``config``; write the run folder to ``out`` (if given) and return the metrics.

    With ``out``, a run that already finished there is not repeated (its metrics are returned), and an
    interrupted one resumes from its checkpoint. Data, task and settings are checked before ``out`` is
    claimed, and a run that fails leaves nothing there that would block the corrected command. Under
    torchrun, training is distributed and only rank 0 writes.
    """
    check_names(config)
    rank, world_size = distributed_context()
    out = Path(out) if out is not None else None
    if out is not None and (out / "metrics.json").exists() and (out / "config.yaml").exists():
        finished = claim_run_folder(out, config, rank)
        if finished is not None:
            log(f"{out}: this run already finished; not repeating it")
            return finished
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)  # noqa: NPY002 - seeds code that draws from numpy's global generator
    method = build_method(config)
    dataset, task, split = prepare_task(config)
    claimed = False
    if out is not None:
        existed = (out / "config.yaml").exists()
        claim_run_folder(out, config, rank)
        claimed = not existed and rank == 0
    try:
        metrics, history, model = train_and_evaluate(
            config, method, dataset, task, split, out, rank, world_size, log, on_step
        )
    except Interrupted:
        raise
    except BaseException as error:
        if out is not None:
            release_claim(out, claimed, resumable=not isinstance(error, CrossfuseError))
        raise
    if out is not None and rank == 0:
        write_run_folder(out, config, metrics, history, model, dataset)
    return metrics


def train_and_evaluate(config, method, dataset, task, split, out, rank, world_size, log, on_step):
    """Train the run's model and measure it; return the metrics, the history and the model."""

    def rows(indices: np.ndarray) -> dict[str, np.ndarray]:
        return {m: x[indices] for m, x in dataset.modalities.items()}

    model = build_model(config, dataset)
    model.fit_normalizers(rows(split.source_train))
    method.setup(model, feature_dims(model, rows(split.source_train)))
    device = resolve_device(config.device)
    model.to(device)
    method.to(device)
    settings = TrainSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        patience=config.patience,
        selection=config.selection,
    )
    labels = dataset.labels
    target_test = split.target_test
    shots = None
    if getattr(method, "needs_target_labels", False):
        labelled_target = split.target_train[labels[split.target_train] >= 0]
        if len(labelled_target) == 0:
            raise ConfigError(
                f"--transfer {config.transfer} needs labelled target samples, and no target training row "
                "has a label"
            )
        shots = choose_shots(labelled_target, labels, config.target_shots or 5, config.seed)
        target_test = np.setdiff1d(target_test, shots)  # the shots' labels were seen: never score them
    elif config.target_shots is not None:
        raise ConfigError(
            f"target_shots: only --transfer finetune uses labelled target samples (got {config.transfer})"
        )
    if hasattr(method, "fit"):
        method.fit(rows(split.source_train), rows(split.target_train), seed=config.seed)
    val_weights = None
    if config.selection in NEEDS_WEIGHTS:
        ratio = DensityRatio(seed=config.seed).fit(rows(split.source_train), rows(split.target_train))
        val_weights = ratio.weights(rows(split.source_val))
    result = train(
        model,
        method,
        (rows(split.source_train), labels[split.source_train]),
        (rows(split.source_val), labels[split.source_val]),
        rows(split.target_train),
        (rows(target_test), labels[target_test]),
        settings,
        seed=config.seed,
        log=log if rank == 0 else (lambda line: None),
        val_weights=val_weights,
        checkpoint_dir=out,
        on_step=on_step if rank == 0 else None,
    )
    if shots is not None:
        source_train = (rows(split.source_train), labels[split.source_train])
        method.finetune(model, (rows(shots), labels[shots]), source_train, config.lr, config.seed)
    target_probabilities, target_features = predict(model, rows(target_test))
    target_labels = labels[target_test]
    final_accuracy = accuracy(target_probabilities, target_labels)
    _, source_features = predict(model, rows(split.source_val))
    scored = target_labels >= 0
    ablation = (
        modality_ablation(model, rows(target_test[scored]), target_labels[scored]) if scored.any() else {}
    )
    chosen = result.history[result.best_epoch - 1]
    oracle = [r["target_accuracy"] for r in result.history if r.get("target_accuracy") is not None]
    if shots is not None and final_accuracy is not None:
        oracle.append(final_accuracy)
    chance = chance_level(labels[split.source_train])
    warnings = run_warnings(result.history, chosen, chance, len(split.source_val))
    if final_accuracy is None:
        log("note: no scored target row has a label, so target accuracy is not measured (null)")
    elif not scored.all():
        log(f"note: target accuracy counts the {int(scored.sum())} of {len(scored)} scored rows with a label")
    metrics = {
        "dataset": dataset.name,
        "task": task_name(config),
        "source_domains": list(task.source),
        "target_domains": list(task.target),
        "fusion": config.fusion,
        "transfer": config.transfer,
        "seed": config.seed,
        "selection": config.selection,
        "n_classes": dataset.n_classes,
        "target_accuracy": final_accuracy,
        "oracle_target_accuracy": max(oracle) if oracle else None,
        "source_val_accuracy": chosen["source_val_accuracy"],
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_seconds": round(result.train_seconds, 3),
        "n_source_train": len(split.source_train),
        "n_source_val": len(split.source_val),
        "n_target_train": len(split.target_train),
        "n_target_test": len(target_test),
        "n_target_test_labelled": int(scored.sum()),
        "n_target_shots": 0 if shots is None else len(shots),
        "proxy_a_distance": round(proxy_a_distance(source_features, target_features, config.seed), 4),
        **{f"target_accuracy_without_{m}": value for m, value in ablation.items()},
        "warnings": warnings,
        "world_size": world_size,
        "device": str(device),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    if len(task.target) > 1:
        domain_of_row = dataset.domains[target_test]
        metrics["target_accuracy_per_domain"] = {
            name: accuracy(target_probabilities[domain_of_row == name], target_labels[domain_of_row == name])
            for name in task.target
        }
    for line in warnings:
        log(f"WARNING: {line}")
    return metrics, result.history, model


def write_run_folder(
    out: Path, config: RunConfig, metrics: dict, history: list[dict], model, dataset: MultimodalDataset
) -> None:
    """Write the run folder; each file goes to a temporary name first, so none is ever half-written.

    ``model.json`` and ``model.safetensors`` make the folder self-contained: :func:`crossfuse.load`
    rebuilds the trained model from them without the training data.
    """
    out.mkdir(parents=True, exist_ok=True)
    atomic_text(out / "history.json", json.dumps(history, indent=2))
    atomic_text(out / MODEL_CARD, json.dumps(model_card(config, dataset, model), indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / ".model.safetensors.partial"), metadata={"fusion": config.fusion})
    (out / ".model.safetensors.partial").replace(out / "model.safetensors")
    atomic_text(out / "metrics.json", json.dumps(metrics, indent=2))  # last: its presence means finished
    (out / CHECKPOINT).unlink(missing_ok=True)
