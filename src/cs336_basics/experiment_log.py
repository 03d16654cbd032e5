"""Core logging system (the guide's ``experiment_log.py``).

``ExperimentConfig``, ``MetricsSnapshot``, ``ExperimentLog``, ``ExperimentTracker`` and
``load_experiment_log`` (and the sinks); every name is also in :mod:`cs336_basics`.
"""

from cs336_basics import (
    ExperimentConfig,
    ExperimentLog,
    ExperimentTracker,
    InMemorySink,
    MetricsSnapshot,
    Sink,
    load_experiment_log,
)

__all__ = [
    "ExperimentConfig",
    "ExperimentLog",
    "ExperimentTracker",
    "InMemorySink",
    "MetricsSnapshot",
    "Sink",
    "load_experiment_log",
]


def __getattr__(name: str):  # noqa: ANN202 - lazy import keeps wandb optional
    if name == "WandbSink":
        import cs336_basics

        return cs336_basics.WandbSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
