"""A benchmark report names the run settings that are not the defaults."""

import yaml

from crossfuse.bench.settings_note import non_default_settings
from crossfuse.config import RunConfig


def write_runs(root, settings_per_run):
    for i, changes in enumerate(settings_per_run):
        folder = root / "runs" / f"run{i}"
        folder.mkdir(parents=True)
        values = RunConfig(**changes).model_dump() | {"record_selection": True, "seed": i}
        (folder / "config.yaml").write_text(yaml.safe_dump(values))


def test_settings_that_are_not_defaults_are_named_with_their_share_of_runs(tmp_path):
    write_runs(
        tmp_path,
        [
            {"normalization": "domain", "transfer": "dann", "data": "elsewhere"},
            {"normalization": "domain", "transfer": "modality-dropout", "modality_dropout": 0.5},
            {"normalization": "domain", "lr": 0.01, "fusion": "lmf"},
        ],
    )
    (line,) = [line for line in non_default_settings(tmp_path) if line]
    assert line == (
        "Settings other than the defaults (the runs' `config.yaml`): `lr: 0.01` (1 of 3 runs), "
        "`modality_dropout: 0.5` (1 of 3 runs), `normalization: domain`."
    )


def test_no_line_when_every_setting_is_a_default(tmp_path):
    write_runs(tmp_path, [{"transfer": "dann", "seed": 3}, {"fusion": "lmf", "record_selection": True}])
    assert non_default_settings(tmp_path) == []
