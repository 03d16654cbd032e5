"""Analysis: reading many runs and showing them.

- ``analyzer``: ``ExperimentAnalyzer`` (load, compare, best run, CSV, DataFrames, values
  at a budget).
- ``plots``: curve figures (matplotlib) and min/max thinning.
- ``report``: the generated part of ``EXPERIMENT_LOG.md``.
- ``budget``: runs' values at exactly a budget (tokens, steps, wall-clock, FLOPs).
"""
