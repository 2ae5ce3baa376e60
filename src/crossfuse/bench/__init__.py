"""``crossfuse bench``: a resumable grid of runs, ``results.csv``, and ``report.md`` with plots."""
