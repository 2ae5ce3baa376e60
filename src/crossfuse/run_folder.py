"""The run folder: claimed before training, written atomically after, freed when a run fails."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import yaml
from safetensors.torch import save_file

from crossfuse.config import RunConfig
from crossfuse.errors import ConfigError
from crossfuse.train.checkpoint import CHECKPOINT


def atomic_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def claim_run_folder(out: Path, config: RunConfig, rank: int) -> dict | None:
    """Prepare ``out`` for ``config``: the finished metrics if this exact run already finished there, else
    ``None``. A folder holding a different run's settings is refused, so nothing finished is overwritten.
    A setting that an older crossfuse did not have, and so did not write, counts as its default there: an
    upgrade does not orphan the run folders (and bench folders) made before it."""
    current = config.model_dump()
    settings = yaml.safe_dump(current, sort_keys=True)
    saved = out / "config.yaml"
    if saved.exists():
        old = yaml.safe_load(saved.read_text()) or {}
        defaults = type(config)().model_dump()
        changed = sorted(k for k in set(old) | set(current) if old.get(k, defaults.get(k)) != current.get(k))
        if changed:
            raise ConfigError(
                f"{out}: holds a run with other settings ({', '.join(changed)} differ); choose another --out"
            )
        if (out / "metrics.json").exists():
            return json.loads((out / "metrics.json").read_text())
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_text(saved, settings)
    return None


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


def write_run_folder(
    out: Path, config: RunConfig, metrics: dict, history: list[dict], model, card: dict
) -> None:
    """Write the run folder; each file goes to a temporary name first, so none is ever half-written.

    ``model.json`` (``card``) and ``model.safetensors`` make the folder self-contained:
    :func:`crossfuse.load` rebuilds the trained model from them without the training data.
    """
    from crossfuse.predictor import MODEL_CARD, MODEL_WEIGHTS

    out.mkdir(parents=True, exist_ok=True)
    atomic_text(out / "history.json", json.dumps(history, indent=2))
    atomic_text(out / MODEL_CARD, json.dumps(card, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    partial = out / f".{MODEL_WEIGHTS}.partial"
    save_file(state, str(partial), metadata={"fusion": config.fusion})
    partial.replace(out / MODEL_WEIGHTS)
    atomic_text(out / "metrics.json", json.dumps(metrics, indent=2))  # last: its presence means finished
    (out / CHECKPOINT).unlink(missing_ok=True)
