"""Internals of the experiment tracker.

Modules, one responsibility each:

- ``errors``: the exception hierarchy.
- ``values``: validating and converting metric values (pure).
- ``records``: ``ExperimentConfig``, ``MetricsSnapshot``, ``ExperimentLog`` and the pure rules
  that apply a logged record to a log (append, merge, rollback, summary).
- ``codec``: encoding and decoding the JSON document and the journal lines (pure).
- ``storage``: file naming, atomic save, the journal writer thread, loading and recovery.
- ``tracker``: ``ExperimentTracker``, which ties the above together on the training thread.
- ``sinks``: the sink base class, the dispatcher thread and the in-memory sink.
- ``wandb_keys``, ``wandb_sink``, ``wandb_push``, ``wandb_pull``: the Weights & Biases mirror.
- ``analysis``, ``plots``, ``report``, ``cli``: comparison, figures, the experiment log document
  and the ``cs336-exp`` command line.
"""
