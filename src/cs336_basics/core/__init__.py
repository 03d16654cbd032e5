"""The core: what a run is, with no I/O and no optional dependency.

- ``errors``: the exception hierarchy.
- ``env``: every environment variable the package reads.
- ``values``: validating and converting metric values, names and texts (pure).
- ``row``: ``MetricsSnapshot``, the field groups, and the table of x-axes (``AXES``).
- ``config``: ``ExperimentConfig``.
- ``history``: ``History``, a run's rows held as columns.
- ``alerts``: ``Alert``, ``AlertRules`` and ``AlertDetector`` (NaN/inf, loss spikes,
  gradient-norm explosions judged row by row, pure).
- ``flops``: model FLOPs per token of a decoder, accelerators' peak FLOP/s, MFU.
- ``log``: ``ExperimentLog``, ``RunResults`` (status, divergence, tokens, best and last
  losses, alerts, FLOPs and MFU, computed once), and the rules that apply a logged record
  to a log.
- ``text``: the summary block, aligned tables, a mirror's status.
- ``progress``: a progress line on a terminal.
- ``plugins``: how lower layers reach the optional W&B adapter, by name.

Layers, each importing only those below it: ``core`` < ``store`` < ``runtime`` <
``analysis`` < ``wandb_adapter`` < ``wandb_compat`` < ``dashboard`` < ``cli``.
"""
