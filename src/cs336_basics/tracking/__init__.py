"""Internals of the experiment tracker.

Modules, one responsibility each:

- ``errors``: the exception hierarchy.
- ``env``: every environment variable the package reads.
- ``values``: validating and converting metric values (pure).
- ``records``: ``ExperimentConfig``, ``MetricsSnapshot``, ``ExperimentLog`` and the pure rules
  that apply a logged record to a log (append, merge, rollback, summary).
- ``codec``: encoding and decoding the JSON document (pure).
- ``journal``: the journal format (record kinds, encoding, replay) and its writer thread.
- ``storage``: file naming, atomic save, the run lock, loading and recovery.
- ``deferred``: rows holding accelerator tensors, converted in batches off the hot path.
- ``tracker``: ``ExperimentTracker``, which ties the above together on the training thread.
- ``sinks``: the sink base class, the dispatcher thread, the in-memory sink, the registry.
- ``analysis``, ``plots``, ``report``, ``cli``: comparison, figures, the experiment log document
  and the ``cs336-exp`` command line.

The Weights & Biases adapter is a package of its own, :mod:`cs336_basics.wandb_adapter`,
which imports this one and is never imported by it.
"""
