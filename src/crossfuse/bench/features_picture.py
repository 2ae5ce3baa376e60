"""t-SNE of source and target features before and after adaptation, from two saved run folders."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from crossfuse.config import RunConfig  # noqa: E402
from crossfuse.train.loop import predict  # noqa: E402


def run_features(run_dir: Path, per_domain: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused features of source-validation and target-test rows of a finished run; domain and class labels."""
    from crossfuse.predictor import load
    from crossfuse.runner import prepare_task

    config = RunConfig(**yaml.safe_load((run_dir / "config.yaml").read_text()))
    dataset, _, split = prepare_task(config)
    model = load(run_dir).model
    rng = np.random.default_rng(0)
    source = rng.permutation(np.concatenate([split.source_val, split.source_train]))[:per_domain]
    target = rng.permutation(split.target_test)[:per_domain]
    rows = np.concatenate([source, target])
    _, features = predict(model, dataset.rows(rows))
    domain = np.r_[np.zeros(len(source)), np.ones(len(target))]
    return features, domain, dataset.labels[rows]


def embed(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-d t-SNE of a run's fused features (:func:`run_features`), with their domain and class labels."""
    features, domain, labels = run_features(run_dir)
    embedded = TSNE(2, init="pca", random_state=0, perplexity=30).fit_transform(features)
    return embedded, domain, labels


def feature_picture(out: Path, rows: list[dict], gain_table) -> str | None:
    """Draw ``out/tsne.png`` for the combination with the largest gain (its lowest seed that has both
    runs), beside its source-only run; return a caption, or ``None`` when no such pair of run folders is
    there."""
    seeds = sorted({int(r["seed"]) for r in rows})
    candidates = sorted(((g, k, t) for k, d in gain_table.items() for t, g in d.items()), reverse=True)
    found = None
    for gain, (task, fusion), transfer in candidates:
        for seed in seeds:
            before = out / "runs" / f"{task}-{fusion}-source-only-seed{seed}"
            after = out / "runs" / f"{task}-{fusion}-{transfer}-seed{seed}"
            if found is None and (before / "model.json").exists() and (after / "model.json").exists():
                found = before, after, task, fusion, transfer, seed, gain
    if found is None:
        return None
    before, after, task, fusion, transfer, seed, gain = found
    n_classes = max(int(r.get("n_classes") or 10) for r in rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    # the two embeddings at once: t-SNE's gradient releases the GIL, and each has its own seed
    with ThreadPoolExecutor(2) as pool:
        embeddings = list(pool.map(embed, (before, after)))
    panels = zip((axes[0], axes[1]), embeddings, ("source-only", transfer), strict=True)
    for ax, (embedded, domain, labels), title in panels:
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
                vmax=max(1, n_classes - 1),
                label=name,
                alpha=0.7,
            )
        ax.set_title(f"{fusion} fusion, {title} (task {task}, seed {seed})")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.legend(title="domain (marker)")
    fig.colorbar(scatter, ax=axes, label="class")
    fig.suptitle("Fused features of source (o) and target (x) samples, coloured by class")
    fig.savefig(out / "tsne.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return (
        f"t-SNE of the fused features of {fusion} fusion on task {task}, seed {seed}: source-only (left) and "
        f"{transfer} (right), "
        + (
            "the largest gain in this grid."
            if gain > 0
            else f"the run closest to source-only ({100 * gain:+.1f} points): no method gains in this grid."
        )
    )
