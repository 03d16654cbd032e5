"""Analysis: reading many runs and showing them.

- ``analyzer``: ``ExperimentAnalyzer`` (load, compare, best run, CSV, DataFrames, values
  at a budget, a group's runs, a sweep's table).
- ``plots``: curve figures (matplotlib) and min/max thinning; a result against a
  hyperparameter (``plot_vs``, one point per run).
- ``report``: the generated part of ``EXPERIMENT_LOG.md`` (with columns at a budget).
- ``html_report``: ``report --html``, one self-contained HTML file to send.
- ``budget``: runs' values at exactly a budget (tokens, steps, wall-clock, FLOPs).
- ``groups``: a group's runs (seeds) as their mean with a min/max or std band.
- ``diff``: what changed between two runs (``cs336-exp diff``).
"""
