"""t-SNE of source and target features before and after adaptation, from two saved run folders."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from crossfuse.config import RunConfig  # noqa: E402
from crossfuse.train.loop import predict  # noqa: E402


def run_features(run_dir: Path, per_domain: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused features of source-validation and target-test rows of a finished run; domain and class labels."""
    from crossfuse.runner import build_model, prepare_task

    config = RunConfig(**yaml.safe_load((run_dir / "config.yaml").read_text()))
    dataset, _, split = prepare_task(config)
    model = build_model(config, dataset)
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    rng = np.random.default_rng(0)
    source = rng.permutation(np.concatenate([split.source_val, split.source_train]))[:per_domain]
    target = rng.permutation(split.target_test)[:per_domain]
    rows = np.concatenate([source, target])
    _, features = predict(model, {m: x[rows] for m, x in dataset.modalities.items()})
    domain = np.r_[np.zeros(len(source)), np.ones(len(target))]
    return features, domain, dataset.labels[rows]


def feature_picture(out: Path, rows: list[dict], gain_table) -> str | None:
    """Draw ``out/tsne.png`` for the combination with the largest gain (seed 0), beside its source-only
    run; return a caption, or ``None`` when the run folders are not there."""
    candidates = sorted(((g, k, t) for k, d in gain_table.items() for t, g in d.items()), reverse=True)
    for _, (task, fusion), transfer in candidates:
        before = out / "runs" / f"{task}-{fusion}-source-only-seed0"
        after = out / "runs" / f"{task}-{fusion}-{transfer}-seed0"
        if (before / "model.safetensors").exists() and (after / "model.safetensors").exists():
            break
    else:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, run_dir, title in ((axes[0], before, "source-only"), (axes[1], after, transfer)):
        features, domain, labels = run_features(run_dir)
        embedded = TSNE(2, init="pca", random_state=0, perplexity=30).fit_transform(features)
        for value, marker, name in ((0, "o", "source"), (1, "x", "target")):
            chosen = domain == value
            scatter = ax.scatter(
                embedded[chosen, 0],
                embedded[chosen, 1],
                c=labels[chosen],
                cmap="tab10",
                marker=marker,
                s=12,
                vmin=0,
                vmax=9,
                label=name,
                alpha=0.7,
            )
        ax.set_title(f"{fusion} fusion, {title} (task {task}, seed 0)")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.legend(title="domain (marker)")
    fig.colorbar(scatter, ax=axes, label="class")
    fig.suptitle("Fused features of source (o) and target (x) samples, coloured by class")
    fig.savefig(out / "tsne.png", dpi=110)
    plt.close(fig)
    return (
        f"t-SNE of the fused features of {fusion} fusion on task {task}, seed 0: source-only (left) and "
        f"{transfer} (right), the largest gain in this grid."
    )
