"""Core logging system (the guide's ``experiment_log.py``).

``ExperimentConfig``, ``MetricsSnapshot``, ``ExperimentLog``, ``ExperimentTracker`` and
``load_experiment_log``; the implementation lives in :mod:`cs336_basics.tracking`.
"""

from cs336_basics.tracking.records import ExperimentConfig, ExperimentLog, MetricsSnapshot
from cs336_basics.tracking.sinks import InMemorySink, Sink
from cs336_basics.tracking.storage import load_experiment_log
from cs336_basics.tracking.tracker import ExperimentTracker

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
        from cs336_basics.wandb_adapter.sink import WandbSink

        return WandbSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
