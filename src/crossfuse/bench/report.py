"""``report.md`` and its plots from ``results.csv`` (and, for the feature picture, the run folders)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crossfuse.bench.grid import REQUIRED_COLUMNS  # noqa: E402
from crossfuse.bench.protocol import held_out_section  # noqa: E402
from crossfuse.bench.settings_note import non_default_settings  # noqa: E402
from crossfuse.errors import DataError  # noqa: E402

GAIN_THRESHOLD = 0.02


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: missing file (run 'crossfuse bench' first)")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    required = set(REQUIRED_COLUMNS)
    if rows and not required <= set(rows[0]):
        raise DataError(f"{path}: missing columns {sorted(required - set(rows[0]))}")
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _number(row: dict, key: str) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return float("nan")


def summarise(rows: list[dict]) -> dict[tuple[str, str, str], dict[str, np.ndarray]]:
    """``(task, fusion, transfer) -> metric -> values over seeds``."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        key = (row["task"], row["fusion"], row["transfer"])
        for metric in (
            "target_accuracy",
            "oracle_target_accuracy",
            "target_mae",
            "oracle_target_mae",
            "source_val_mae",
            "target_r2",
            "target_balanced_accuracy",
            "target_macro_f1",
            "source_val_accuracy",
            "proxy_a_distance",
            "train_seconds",
        ):
            groups[key][metric].append(_number(row, metric))
        groups[key]["seed"].append(row["seed"])
        groups[key]["flagged"].append(bool(row.get("warnings")))
    return {k: {m: np.array(v) for m, v in d.items()} for k, d in groups.items()}


def _pm(values: np.ndarray, scale: float = 100.0, digits: int = 1) -> str:
    values = values[~np.isnan(values.astype(float))] if values.dtype != object else values
    if len(values) == 0:
        return "–"
    return f"{scale * values.mean():.{digits}f} ± {scale * values.std():.{digits}f}"


def gains(summary) -> dict[tuple[str, str], dict[str, float]]:
    """``(task, fusion) -> transfer -> mean target gain over source-only`` (label-free selection)."""
    return {key: {t: g[0] for t, g in value.items()} for key, value in gains_with_spread(summary).items()}


def gains_with_spread(
    summary, metric: str = "target_accuracy"
) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """``(task, fusion) -> transfer -> (mean, std)`` of the per-seed gain in ``metric`` over the
    source-only run of the same seed (seeds without a source-only run are left out of the spread); for a
    regression's ``target_mae`` the change of the error (negative: adaptation lowered it)."""
    result: dict = defaultdict(dict)
    for (task, fusion, transfer), metrics in summary.items():
        baseline = summary.get((task, fusion, "source-only"))
        if baseline is None or transfer == "source-only" or np.isnan(metrics[metric]).all():
            continue
        mean = np.nanmean(metrics[metric]) - np.nanmean(baseline[metric])
        by_seed = dict(zip(baseline["seed"], baseline[metric], strict=True))
        seeds = zip(metrics["seed"], metrics[metric], strict=True)
        paired = [a - by_seed[s] for s, a in seeds if s in by_seed]
        spread = float(np.nanstd(paired)) if paired else float("nan")
        result[(task, fusion)][transfer] = (float(mean), spread)
    return result


def error_change_section(summary) -> list[str]:
    """A regression's counterpart of the gains: each method's target MAE minus source-only's, per seed."""
    changes = gains_with_spread(summary, "target_mae")
    if not changes:
        return []
    transfers = sorted({t for c in changes.values() for t in c})
    lines = [
        "",
        "Target MAE minus source-only's, same seed (negative: adaptation lowered the error), mean ± std:",
        "",
        "| task | fusion | " + " | ".join(transfers) + " |",
        "| --- | --- |" + " --- |" * len(transfers),
    ]
    for key in sorted(changes):
        cells = [
            f"{changes[key][t][0]:+.3g} ± {changes[key][t][1]:.2g}" if t in changes[key] else "–"
            for t in transfers
        ]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return lines


def plot_gains(gain_table, path: Path) -> None:
    """Bars of the mean gain, error bars of its standard deviation over seeds (``gains_with_spread``)."""
    keys = sorted(gain_table)
    transfers = sorted({t for g in gain_table.values() for t in g})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(keys) + 2), 4))
    width = 0.8 / max(1, len(transfers))
    for i, transfer in enumerate(transfers):
        values = [100 * gain_table[k].get(transfer, (np.nan, np.nan))[0] for k in keys]
        spread = [100 * gain_table[k].get(transfer, (np.nan, np.nan))[1] for k in keys]
        ax.bar(np.arange(len(keys)) + i * width, values, width, yerr=spread, capsize=3, label=transfer)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axhline(100 * GAIN_THRESHOLD, color="grey", linestyle="--", linewidth=0.8, label="+2 points")
    ax.set_xticks(np.arange(len(keys)) + width * (len(transfers) - 1) / 2)
    ax.set_xticklabels([f"{fusion}\n({task})" for task, fusion in keys])
    ax.set_xlabel("fusion (task)")
    ax.set_ylabel("target accuracy gain (points)")
    ax.set_title(
        "Gain of each transfer method over source-only\n(label-free selection, mean ± std over seeds)"
    )
    ax.legend(title="transfer", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_a_distance(summary, path: Path) -> None:
    keys = sorted(summary)
    values = [np.nanmean(summary[k]["proxy_a_distance"]) for k in keys]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(keys) + 1)))
    ax.barh(np.arange(len(keys)), values, color="tab:purple")
    ax.set_yticks(np.arange(len(keys)))
    ax.set_yticklabels([f"{t} / {f} / {m}" for t, f, m in keys], fontsize=8)
    ax.set_xlabel("proxy A-distance of fused features (0 = domains indistinguishable, 2 = separable)")
    ax.set_title("Source-target distance after training, per combination")
    ax.set_xlim(0, 2)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def ablation_rows(rows: list[dict]) -> dict[str, tuple[float, dict[str, float]]]:
    """``fusion -> (full target accuracy, modality -> accuracy without it)`` for source-only runs."""
    table: dict = {}
    for fusion in sorted({r["fusion"] for r in rows}):
        chosen = [r for r in rows if r["fusion"] == fusion and r["transfer"] == "source-only"]
        columns = sorted({k for r in chosen for k in r if k.startswith("target_accuracy_without_") and r[k]})
        if not chosen or not columns:
            continue
        full = float(np.mean([_number(r, "target_accuracy") for r in chosen]))
        table[fusion] = (
            full,
            {
                c.removeprefix("target_accuracy_without_"): float(np.nanmean([_number(r, c) for r in chosen]))
                for c in columns
            },
        )
    return table


def plot_ablation(table, path: Path) -> None:
    fusions = sorted(table)
    modalities = sorted({m for _, without in table.values() for m in without})
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(fusions) + 2), 4))
    width = 0.8 / (len(modalities) + 1)
    ax.bar(np.arange(len(fusions)), [100 * table[f][0] for f in fusions], width, label="all modalities")
    for i, m in enumerate(modalities, 1):
        ax.bar(
            np.arange(len(fusions)) + i * width,
            [100 * table[f][1].get(m, np.nan) for f in fusions],
            width,
            label=f"without {m}",
        )
    ax.set_xticks(np.arange(len(fusions)) + width * len(modalities) / 2)
    ax.set_xticklabels(fusions)
    ax.set_xlabel("fusion (source-only)")
    ax.set_ylabel("target accuracy (%)")
    ax.set_title("Per-modality ablation: each modality removed at test time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def build_report(out: Path, feature_picture: bool = True) -> Path:
    """Write ``out/report.md`` and its plots from ``out/results.csv``; return the report's path."""
    rows = read_results(out / "results.csv")
    summary = summarise(rows)
    gain_table = gains(summary)
    spread_table = gains_with_spread(summary)
    regression = [key for key in sorted(summary) if not np.isnan(summary[key]["target_mae"]).all()]
    classification = len(regression) < len(summary)  # else the regression table below is the results
    selection = ", ".join(sorted({r["selection"] for r in rows}))
    chosen = (
        "Target accuracy is" if classification else "Every run is a regression; its target error is that of"
    )
    lines = [
        "# crossfuse benchmark report",
        "",
        f"{len(rows)} runs from `{out / 'results.csv'}`. {chosen} the checkpoint chosen without target "
        f"labels (selection: {selection}); **oracle** is the best epoch by target labels, shown only for "
        "reference." + (" Values are mean ± standard deviation over seeds, in %." if classification else ""),
    ]
    lines += non_default_settings(out)
    if classification:
        lines += [
            "",
            "| task | fusion | transfer | seeds | target acc | oracle target acc | source-val acc "
            "| proxy A-dist | s/run | flagged |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
    for key in sorted(set(summary) - set(regression)):
        m = summary[key]
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {len(m['seed'])} | {_pm(m['target_accuracy'])} | "
            f"{_pm(m['oracle_target_accuracy'])} | {_pm(m['source_val_accuracy'])} | "
            f"{_pm(m['proxy_a_distance'], 1.0, 2)} | {np.nanmean(m['train_seconds']):.0f} | "
            f"{int(np.sum(m['flagged']))} |"
        )
    lines += held_out_section(out, rows)
    lines += unbalanced_section(summary)
    if regression:
        lines += [
            "",
            "## Regression runs (errors in the targets' units, mean ± std over seeds)",
            "",
            "| task | fusion | transfer | seeds | target MAE | oracle target MAE | source-val MAE "
            "| target R2 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for key in regression:
            m = summary[key]
            lines.append(
                f"| {key[0]} | {key[1]} | {key[2]} | {len(m['seed'])} | {_pm(m['target_mae'], 1.0, 2)} | "
                f"{_pm(m['oracle_target_mae'], 1.0, 2)} | {_pm(m['source_val_mae'], 1.0, 2)} | "
                f"{_pm(m['target_r2'], 1.0, 3)} |"
            )
        lines += error_change_section(summary)
    lines += ["", "## Gain over source-only", ""]
    if gain_table:
        transfers = sorted({t for g in gain_table.values() for t in g})
        lines += [
            "| task | fusion | " + " | ".join(transfers) + " |",
            "| --- | --- |" + " --- |" * len(transfers),
        ]
        for key in sorted(gain_table):
            cells = [
                f"{100 * spread_table[key][t][0]:+.1f} ± {100 * spread_table[key][t][1]:.1f}"
                if t in spread_table[key]
                else "–"
                for t in transfers
            ]
            lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
        winners = [(g, t, k) for k, d in gain_table.items() for t, g in d.items() if g >= GAIN_THRESHOLD]
        lines.append("")
        if winners:
            best = max(winners)
            lines.append(
                f"{len(winners)} combination(s) beat source-only by 2 points or more; the largest gain is "
                f"{100 * best[0]:+.1f} points, {best[1]} with {best[2][1]} fusion on task {best[2][0]}."
            )
        else:
            lines.append("No transfer method beats source-only by 2 points or more on this grid.")
        plot_gains(spread_table, out / "gains.png")
        lines += ["", "![gains](gains.png)"]
    elif regression:
        lines.append("Regression runs only: see the change of their error above.")
    else:
        lines.append("No source-only baseline in the grid, so no gains can be computed.")
    plot_a_distance(summary, out / "a_distance.png")
    lines += ["", "## Proxy A-distance", "", "![proxy A-distance](a_distance.png)"]
    ablation = ablation_rows(rows)
    if ablation:
        plot_ablation(ablation, out / "ablation.png")
        lines += [
            "",
            "## Per-modality ablation (source-only models, target accuracy in %)",
            "",
            "| fusion | all | "
            + " | ".join(f"without {m}" for m in sorted(next(iter(ablation.values()))[1]))
            + " |",
            "| --- | --- |" + " --- |" * len(next(iter(ablation.values()))[1]),
        ]
        for fusion, (full, without) in sorted(ablation.items()):
            lines.append(
                f"| {fusion} | {100 * full:.1f} | "
                + " | ".join(f"{100 * v:.1f}" for _, v in sorted(without.items()))
                + " |"
            )
        lines += ["", "![ablation](ablation.png)"]
    lines += selection_section(out)
    lines += robustness_section(out)
    if feature_picture:
        from crossfuse.bench.features_picture import feature_picture as draw

        caption = draw(out, rows, gain_table)
        lines += ["", "## Features before and after adaptation", ""]
        if caption:
            lines += [caption, "", "![t-SNE](tsne.png)"]
        else:
            lines.append(
                "No picture: it needs a source-only run and a transfer run of the same task, fusion and seed "
                "with their model files."
            )
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


#: Points by which a row's mean balanced accuracy must differ from its mean accuracy for the report to
#: give the balanced accuracy and macro F1 table. With classes of equal size the two are equal.
UNBALANCED_GAP = 0.01


def unbalanced_section(summary) -> list[str]:
    """The target's balanced accuracy and macro F1, when some row's balanced accuracy is a point or more
    away from its accuracy: with unbalanced target classes accuracy mostly counts the large ones (a model
    that answers a 90% class always reads 90%)."""
    keys = sorted(summary)
    gaps = [
        abs(np.nanmean(summary[k]["target_balanced_accuracy"]) - np.nanmean(summary[k]["target_accuracy"]))
        for k in keys
        if not np.isnan(summary[k]["target_balanced_accuracy"]).all()
    ]
    if not gaps or max(gaps) < UNBALANCED_GAP:
        return []
    lines = [
        "",
        "## Unbalanced target classes: balanced accuracy and macro F1 (%, mean ± std over seeds)",
        "",
        "Accuracy above mostly counts the large classes; balanced accuracy is the mean of the per-class "
        "recalls, macro F1 the mean of the per-class F1 scores.",
        "",
        "| task | fusion | transfer | target acc | target balanced acc | target macro F1 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key in keys:
        m = summary[key]
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {_pm(m['target_accuracy'])} | "
            f"{_pm(m['target_balanced_accuracy'])} | {_pm(m['target_macro_f1'])} |"
        )
    return lines


def robustness_section(out: Path) -> list[str]:
    """The robustness table and plot, from the ``robustness.json`` of the run folders (``crossfuse bench
    --robustness``); effective robustness is measured against late-fusion source-only of the same task
    and seed, MultiBench's reference."""
    import json

    from crossfuse.evaluation.robustness import effective_robustness
    from crossfuse.robustness_report import ROBUSTNESS, mean_curve, plot_curves

    found = {}
    for path in sorted((out / "runs").glob(f"*/{ROBUSTNESS}")):
        metrics_path = path.parent / "metrics.json"
        if metrics_path.exists():
            metrics = json.loads(metrics_path.read_text())
            key = (metrics["task"], metrics["fusion"], metrics["transfer"], metrics["seed"])
            found[key] = json.loads(path.read_text())
    if not found:
        return []
    metric = next(iter(found.values()))["metric"]
    lower_is_better = "MAE" in metric
    modalities = sorted({m for r in found.values() for m in r["missing"]})
    groups: dict = defaultdict(list)
    for (task, fusion, transfer, seed), result in found.items():
        groups[(task, fusion, transfer)].append((seed, result))
    lines = [
        "",
        f"## Robustness ({metric}; each modality missing, and noise on all modalities)",
        "",
        "Relative robustness is the area under the curve of the score against noise strength 0-1 (all "
        "modalities perturbed); effective robustness is the summed difference from late-fusion "
        "source-only's curve of the same task and seed moved to the same clean score (MultiBench; positive "
        "is more robust). Mean over seeds."
        + (" For an error (MAE) lower scores are better." if lower_is_better else ""),
        "",
        "| task | fusion | transfer | clean | "
        + " | ".join(f"without {m}" for m in modalities)
        + " | relative | effective |",
        "| --- | --- | --- | --- |" + " --- |" * (len(modalities) + 2),
    ]
    curves = {}
    for (task, fusion, transfer), members in sorted(groups.items()):
        results = [r for _, r in members]
        effective = [
            effective_robustness(
                r["noise"]["all"], found[(task, "late", "source-only", seed)]["noise"]["all"]
            )
            for seed, r in members
            if (task, "late", "source-only", seed) in found and "all" in r["noise"]
        ]
        missing = [np.mean([r["missing"].get(m, np.nan) for r in results]) for m in modalities]
        relative = np.mean([r["relative_robustness"].get("all", np.nan) for r in results])
        lines.append(
            f"| {task} | {fusion} | {transfer} | {np.mean([r['clean'] for r in results]):.3f} | "
            + " | ".join(f"{v:.3f}" for v in missing)
            + f" | {relative:.3f} | "
            + (f"{np.mean(effective):+.3f}" if effective else "–")
            + " |"
        )
        if all("all" in r["noise"] for r in results):
            curves[f"{fusion} / {transfer}"] = mean_curve(results, "all")
    if curves:
        strengths = next(iter(found.values()))["strengths"]
        plot_curves(
            curves, strengths, metric, out / "robustness.png", "Noise on every modality (mean over seeds)"
        )
        lines += ["", "![robustness](robustness.png)"]
    return lines


def selection_section(out: Path) -> list[str]:
    """How much each label-free criterion loses against the oracle (the best epoch by target labels), over
    the runs that recorded every criterion's choice (``selection_by_criterion`` in ``metrics.json``)."""
    import json

    regrets: dict = defaultdict(list)
    chosen: dict = defaultdict(list)
    for path in sorted((out / "runs").glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        oracle = metrics.get("oracle_target_accuracy")
        for name, choice in (metrics.get("selection_by_criterion") or {}).items():
            value = choice.get("target_accuracy")
            if oracle is not None and value is not None:
                regrets[name].append(oracle - value)
                chosen[name].append(value)
    if not regrets:
        return []
    lines = [
        "",
        "## Label-free selection: regret against the oracle",
        "",
        "For every run, the epoch each criterion would have kept (the latest within its tolerance of its "
        "best) and that epoch's target accuracy; regret is the oracle's (the best epoch by target labels, "
        "or the final model after a fine-tuning phase) minus it, in points.",
        "",
        "| criterion | runs | target acc of its choice | mean regret | largest regret |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in sorted(regrets):
        values = np.array(regrets[name])
        lines.append(
            f"| {name} | {len(values)} | {_pm(np.array(chosen[name]))} | {100 * values.mean():.1f} | "
            f"{100 * values.max():.1f} |"
        )
    return lines
