"""cs336_basics: local-first experiment tracking for small language-model training runs.

The public modules are :mod:`cs336_basics.experiment_log` (tracking) and
:mod:`cs336_basics.experiment_analysis` (comparison); the internals live in
:mod:`cs336_basics.tracking`.
"""

__version__ = "0.1.0"
