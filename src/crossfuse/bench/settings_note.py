"""The run settings of a benchmark that differ from the defaults, for its report: a table read without
them (``normalization: domain``, another learning rate) would be compared with the wrong numbers."""

from __future__ import annotations

from pathlib import Path

#: What a benchmark varies over its grid or sets for itself: not a setting its reader needs told.
GRID_KEYS = frozenset(
    {
        "data",
        "task",
        "source",
        "target",
        "modalities",
        "fusion",
        "transfer",
        "seed",
        "device",
        "record_selection",
    }
)


def non_default_settings(out: Path) -> list[str]:
    """One Markdown line naming each setting of the runs under ``out/runs`` (their ``config.yaml``) whose
    value is not :class:`~crossfuse.config.RunConfig`'s default, with how many runs had it when not all
    did (a method's own recipe, say); no line when every setting is a default."""
    import yaml

    from crossfuse.config import RunConfig

    defaults = RunConfig().model_dump()
    paths = sorted((out / "runs").glob("*/config.yaml"))
    counts: dict[tuple[str, str], int] = {}
    for path in paths:
        settings = yaml.safe_load(path.read_text()) or {}
        for key, value in settings.items():
            if key not in GRID_KEYS and key in defaults and value != defaults[key]:
                counts[(key, str(value))] = counts.get((key, str(value)), 0) + 1
    if not counts:
        return []
    named = [
        f"`{key}: {value}`" + ("" if n == len(paths) else f" ({n} of {len(paths)} runs)")
        for (key, value), n in sorted(counts.items())
    ]
    return ["", "Settings other than the defaults (the runs' `config.yaml`): " + ", ".join(named) + "."]
