"""The leave-one-domain-out protocol of domain generalisation: each domain in turn is the unseen one.

For every held-out domain ``D`` of the chosen domains, the runs train on all the others (kept apart as
source domains) and are scored on ``D``, which they never see; each run chooses its epoch on the source
domains alone (training-domain validation, DomainBed's default). ``results.csv`` names ``D`` in its
``target`` column; the report tabulates method x held-out domain.

With ``validation='leave-one-source-out'`` the benchmark also chooses a *method* for each ``D`` without
its labels, as DomainBed's leave-one-domain-out cross-validation does: for every other domain ``S``, each
method trains on the domains other than ``D`` and ``S`` and is scored on ``S`` (whose labels are training
data when ``D`` is held out); the method with the best mean over ``S`` is the one chosen for ``D``. These
inner runs are extra rows of ``results.csv``, told apart by training on two domains fewer than there are.
"""

from __future__ import annotations

import json
import re
from itertools import product
from pathlib import Path

import numpy as np

from crossfuse.bench.grid import RunSpec
from crossfuse.errors import ConfigError, DataError

PROTOCOLS = ("none", "leave-one-domain-out")
VALIDATIONS = ("training-domain", "leave-one-source-out")
#: The file a benchmark folder records its protocol in (the report reads it).
PROTOCOL_FILE = "protocol.json"


def dg_methods() -> list[str]:
    """``erm`` first, then every registered domain-generalisation method."""
    from crossfuse.registry import TRANSFERS

    names = [n for n in TRANSFERS.names() if getattr(TRANSFERS[n], "domain_generalization", False)]
    return ["erm"] + [n for n in names if n != "erm"]


def av_digits_domains(choice: str) -> list[str]:
    """``speakers``: each speaker with MNIST Census-employee digits (the image source held fixed);
    ``image-sources``: each image source with a share of every speaker (the speakers held fixed);
    ``both``: four speakers each with its own image source, so a held-out domain is new in both."""
    from crossfuse.data.avdigits import ALL_SPEAKERS, SPEAKERS
    from crossfuse.data.image_sources import IMAGE_SOURCES

    if choice == "speakers":
        return [f"{speaker}+mnist-census" for speaker in SPEAKERS]
    if choice == "image-sources":
        return [f"{ALL_SPEAKERS}+{source}" for source in IMAGE_SOURCES]
    if choice == "both":
        return [f"{speaker}+{source}" for speaker, source in zip(SPEAKERS, IMAGE_SOURCES, strict=False)]
    raise ConfigError(f"--domains {choice!r}: for av-digits give speakers, image-sources, both or a list")


def folder_domains(data: str) -> list[str]:
    """Every domain of a data folder (read from ``domains.npy`` alone)."""
    from crossfuse.data.folder import as_domain_names, load_array

    path = Path(data) / "domains.npy"
    return sorted(set(as_domain_names(load_array(path), path).tolist()))


def held_out_domains(data: str, domains: list[str] | None) -> list[str]:
    """The domains each held out in turn: those given, the AV-Digits family named, or all of a data set's
    (a folder's or a named public one's)."""
    from crossfuse.data.public import PUBLIC_DATASETS

    if data == "av-digits":
        if not domains or (len(domains) == 1 and domains[0] in ("speakers", "image-sources", "both")):
            return av_digits_domains(domains[0] if domains else "speakers")
        return list(domains)
    if data in PUBLIC_DATASETS:
        known = PUBLIC_DATASETS[data]().domain_names
    else:
        known = folder_domains(data)
    chosen = list(domains) if domains else known
    for name in chosen:
        if name not in known:
            raise DataError(f"--domains: {name!r} is not a domain of {data} (domains: {', '.join(known)})")
    if len(chosen) < 2:
        raise ConfigError(
            f"leave-one-domain-out needs at least 2 domains; {data} has {', '.join(chosen) or 'none'}"
        )
    return chosen


def fold_name(domain: str) -> str:
    return "heldout-" + re.sub(r"[^A-Za-z0-9_.+-]", "_", domain)


def leave_one_out_specs(
    domains: list[str],
    fusions: list[str],
    transfers: list[str],
    seeds: list[int],
    validation: str = "training-domain",
) -> list[RunSpec]:
    """One run per held-out domain x fusion x transfer x seed; with ``'leave-one-source-out'``
    validation also one per further held-out source domain, for the methods that can train on what
    is left."""
    if validation not in VALIDATIONS:
        raise ConfigError(f"--validation {validation!r}: choose from {', '.join(VALIDATIONS)}")
    specs = [
        RunSpec(fold_name(d), f, m, s, source=tuple(x for x in domains if x != d), target=(d,))
        for d in domains
        for f in fusions
        for m in transfers
        for s in seeds
    ]
    if validation == "leave-one-source-out":
        from crossfuse.registry import TRANSFERS

        for d, v, f, m, s in product(domains, domains, fusions, transfers, seeds):
            rest = tuple(x for x in domains if x not in (d, v))
            if v != d and rest and getattr(TRANSFERS[m], "min_source_domains", 1) <= len(rest):
                name = f"{fold_name(d)}-val-{fold_name(v)[len('heldout-') :]}"
                specs.append(RunSpec(name, f, m, s, source=rest, target=(v,)))
    return specs


def write_protocol(out: Path, protocol: str, domains: list[str], validation: str = "training-domain") -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {"protocol": protocol, "domains": domains, "validation": validation}
    (out / PROTOCOL_FILE).write_text(json.dumps(record, indent=2))


def is_outer(row: dict, domains: list[str]) -> bool:
    """Whether a result row is a held-out run (trained on every domain but its target), not an inner
    leave-one-source-out validation run."""
    sources = [s for s in str(row.get("source_domains", "")).split(" | ") if s]
    return len(sources) == len(domains) - 1


def leave_one_source_out_choices(rows: list[dict], domains: list[str]) -> dict[tuple[str, str], dict]:
    """``(fusion, held-out domain) -> {'scores': {method: mean inner accuracy}, 'chosen': method}`` from
    the inner runs (each method's accuracy on every other domain held out too, over seeds)."""
    inner = [r for r in rows if not is_outer(r, domains) and r.get("target_accuracy") not in (None, "")]
    choices = {}
    for fusion in sorted({r["fusion"] for r in inner}):
        for held in domains:
            scores = {}
            for method in sorted({r["transfer"] for r in inner}):
                per_source = {}
                for r in inner:
                    sources = set(r["source_domains"].split(" | "))
                    if (
                        r["fusion"] == fusion
                        and r["transfer"] == method
                        and held not in sources | {r["target"]}
                    ):
                        per_source.setdefault(r["target"], []).append(float(r["target_accuracy"]))
                if len(per_source) == len(domains) - 1:
                    scores[method] = float(np.mean([np.mean(v) for v in per_source.values()]))
            if scores:
                choices[(fusion, held)] = {"scores": scores, "chosen": max(scores, key=scores.get)}
    return choices


def read_protocol(out: Path) -> dict | None:
    path = out / PROTOCOL_FILE
    return json.loads(path.read_text()) if path.exists() else None


def held_out_table(rows: list[dict], domains: list[str]) -> dict[tuple[str, str], dict]:
    """``(fusion, transfer) -> {'cells': {domain: (mean, std)}, 'mean': (mean, std), 'seeds': n}``:
    target accuracy on each held-out domain over seeds, and the mean over domains (its spread is the
    standard deviation over seeds of each seed's mean over the domains; seeds missing a domain are left
    out of it)."""
    table: dict[tuple[str, str], dict] = {}
    keys = sorted({(r["fusion"], r["transfer"]) for r in rows})
    for key in keys:
        mine = [r for r in rows if (r["fusion"], r["transfer"]) == key]
        by_seed: dict[int, dict[str, float]] = {}
        for r in mine:
            value = r.get("target_accuracy")
            if value not in (None, ""):
                by_seed.setdefault(int(r["seed"]), {})[r["target"]] = float(value)
        cells = {}
        for d in domains:
            values = [v[d] for v in by_seed.values() if d in v]
            if values:
                cells[d] = (float(np.mean(values)), float(np.std(values)))
        complete = [
            np.mean([v[d] for d in domains]) for v in by_seed.values() if all(d in v for d in domains)
        ]
        mean = (float(np.mean(complete)), float(np.std(complete))) if complete else None
        table[key] = {"cells": cells, "mean": mean, "seeds": len(complete)}
    return table


def held_out_section(out: Path, rows: list[dict]) -> list[str]:
    """The report's leave-one-domain-out part: method x held-out domain, the mean over domains, each
    method against ``erm``, and a plot of the means."""
    protocol = read_protocol(out)
    if not protocol or protocol.get("protocol") != "leave-one-domain-out":
        return []
    domains = protocol["domains"]
    inner_rows = rows
    rows = [r for r in rows if is_outer(r, domains)]
    table = held_out_table(rows, domains)
    lines = [
        "",
        "## Leave one domain out",
        "",
        "Each column is a domain held out unseen: the runs trained on all the others and chose their epoch "
        "on the source domains' validation rows (training-domain validation); target accuracy in %, mean ± "
        "std over seeds. *mean* is the mean over the held-out domains (its spread over seeds).",
        "",
        "| fusion | method | seeds | " + " | ".join(domains) + " | mean |",
        "| --- | --- | --- |" + " --- |" * (len(domains) + 1),
    ]

    def cell(value) -> str:
        return "–" if value is None else f"{100 * value[0]:.1f} ± {100 * value[1]:.1f}"

    for (fusion, transfer), entry in table.items():
        cells = [cell(entry["cells"].get(d)) for d in domains]
        row = f"| {fusion} | {transfer} | {entry['seeds']} | " + " | ".join(cells)
        lines.append(row + f" | {cell(entry['mean'])} |")
    verdicts = []
    for (fusion, transfer), entry in table.items():
        baseline = table.get((fusion, "erm"))
        if transfer == "erm" or baseline is None or entry["mean"] is None or baseline["mean"] is None:
            continue
        gain = entry["mean"][0] - baseline["mean"][0]
        spread = max(entry["mean"][1], baseline["mean"][1])
        verdict = "beats" if gain > spread else ("trails" if gain < -spread else "ties with")
        if min(entry["seeds"], baseline["seeds"]) < 2:
            verdict = "differs (one seed: no spread to judge by) from"
        verdicts.append(
            f"- {transfer} ({fusion}) {verdict} erm: {100 * gain:+.1f} points on the mean over held-out "
            f"domains (seeds' spread {100 * spread:.1f})"
        )
    if verdicts:
        lines += ["", "Against erm (a margin counts when larger than the larger of the two spreads):", ""]
        lines += verdicts
    plot_held_out(table, out / "held_out.png")
    lines += ["", "![held-out domains](held_out.png)"]
    lines += method_choice_lines(leave_one_source_out_choices(inner_rows, domains), table, domains)
    return lines


def method_choice_lines(choices: dict, table: dict, domains: list[str]) -> list[str]:
    """The report's table of the method leave-one-source-out validation picks for each held-out domain,
    beside erm and the best method by the held-out labels (the oracle)."""
    if not choices:
        return []
    lines = [
        "",
        "### Choosing the method without the held-out labels (leave-one-source-out validation)",
        "",
        "For each held-out domain, the method with the best mean accuracy on the other domains, each held "
        "out in turn from the remaining ones; its held-out accuracy beside erm's and the best method's by "
        "the held-out labels (**oracle**), in %, mean over seeds.",
        "",
        "| fusion | held out | chosen | chosen acc | erm acc | oracle method | oracle acc |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    totals: dict[str, dict[str, list[float]]] = {}
    for (fusion, held), choice in sorted(choices.items()):
        accuracy = {
            m: entry["cells"][held][0]
            for (f, m), entry in table.items()
            if f == fusion and held in entry["cells"]
        }
        if not accuracy:
            continue
        chosen, oracle = choice["chosen"], max(accuracy, key=accuracy.get)
        shown = {m: f"{100 * a:.1f}" for m, a in accuracy.items()}
        for column, method in (("chosen", chosen), ("erm", "erm"), ("oracle", oracle)):
            if method in accuracy:
                totals.setdefault(fusion, {}).setdefault(column, []).append(accuracy[method])
        lines.append(
            f"| {fusion} | {held} | {chosen} | {shown.get(chosen, '–')} | {shown.get('erm', '–')} | "
            f"{oracle} | {shown[oracle]} |"
        )
    for fusion, columns in totals.items():
        mean = {k: 100 * float(np.mean(v)) for k, v in columns.items()}
        lines.append(
            f"| {fusion} | **mean** | | {mean.get('chosen', float('nan')):.1f} | "
            f"{mean.get('erm', float('nan')):.1f} | | {mean.get('oracle', float('nan')):.1f} |"
        )
    return lines


def plot_held_out(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [(f"{t} ({f})", e["mean"]) for (f, t), e in table.items() if e["mean"] is not None]
    if not entries:
        return
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(entries) + 1), 3.2))
    axis.bar(range(len(entries)), [100 * m for _, (m, _) in entries], yerr=[100 * s for _, (_, s) in entries])
    axis.set_xticks(range(len(entries)), [name for name, _ in entries], rotation=30, ha="right")
    axis.set_ylabel("mean held-out accuracy (%)")
    axis.set_title("leave one domain out")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
