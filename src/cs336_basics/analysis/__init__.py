"""Analysis: reading many runs and showing them.

- ``analyzer``: ``ExperimentAnalyzer`` (load, compare, best run, CSV, DataFrames).
- ``plots``: curve figures (matplotlib) and min/max thinning.
- ``report``: the generated part of ``EXPERIMENT_LOG.md``.
"""
