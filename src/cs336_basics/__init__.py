"""cs336_basics: local-first experiment tracking for small language-model training runs.

Everything a user needs is importable from here::

    from cs336_basics import ExperimentConfig, ExperimentTracker, ExperimentAnalyzer

The guide's own modules, :mod:`cs336_basics.experiment_log` and
:mod:`cs336_basics.experiment_analysis`, export the same names. Names that need an optional
extra (``WandbSink``, ``push_run``, ``pull_runs``, ``import_wandb_runs``: ``[wandb]``;
``plot_runs``, ``plot_vs``: ``[plot]``; ``run_trial``, ``open_study``, ``TrialReporter``:
``[sweep]``, from :mod:`cs336_basics.sweep`) are imported on first use.
:mod:`cs336_basics.wandb_compat` is the drop-in for ``wandb``.

The packages, in layers (each imports only those before it): ``core`` (the run, no I/O),
``store`` (files, formats, the one loader), ``runtime`` (the tracker and what runs beside
a training loop), ``analysis`` (comparing, plots, the report), ``wandb_adapter``,
``wandb_compat``, ``dashboard`` (the live page) and ``cli`` (``cs336-exp``). They are
internal: import from here. :mod:`cs336_basics.sweep` (every Optuna trial one tracked run;
W&B sweep agents) is public, on top of ``runtime``, like the guide's modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cs336_basics.analysis.analyzer import ExperimentAnalyzer
from cs336_basics.core.alerts import Alert, AlertRules
from cs336_basics.core.config import ExperimentConfig
from cs336_basics.core.errors import (
    LogFormatError,
    PushError,
    RunClosedError,
    RunInUseError,
    SinkUnavailableError,
    TrackingError,
    UnknownRunError,
    UsageError,
    WandbPullError,
)
from cs336_basics.core.flops import flops_per_token, peak_flops
from cs336_basics.core.log import ExperimentLog, RunResults
from cs336_basics.core.row import MetricsSnapshot
from cs336_basics.runtime.sinks import InMemorySink, Sink, register_sink
from cs336_basics.runtime.tracker import ExperimentTracker
from cs336_basics.store.load import load_experiment_log

if TYPE_CHECKING:
    from cs336_basics.analysis.plots import plot_runs, plot_vs
    from cs336_basics.sweep import TrialReporter, open_study, run_trial
    from cs336_basics.wandb_adapter.importer import import_wandb_runs
    from cs336_basics.wandb_adapter.pull import pull_runs
    from cs336_basics.wandb_adapter.push import push_run
    from cs336_basics.wandb_adapter.sink import WandbSink

__version__ = "0.2.0"

#: Optional names: where each lives, imported on first access.
_LAZY = {
    "WandbSink": "cs336_basics.wandb_adapter.sink",
    "push_run": "cs336_basics.wandb_adapter.push",
    "pull_runs": "cs336_basics.wandb_adapter.pull",
    "import_wandb_runs": "cs336_basics.wandb_adapter.importer",
    "plot_runs": "cs336_basics.analysis.plots",
    "plot_vs": "cs336_basics.analysis.plots",
    "run_trial": "cs336_basics.sweep",
    "open_study": "cs336_basics.sweep",
    "TrialReporter": "cs336_basics.sweep",
}

__all__ = [
    "Alert",
    "AlertRules",
    "ExperimentAnalyzer",
    "ExperimentConfig",
    "ExperimentLog",
    "ExperimentTracker",
    "flops_per_token",
    "import_wandb_runs",
    "InMemorySink",
    "load_experiment_log",
    "LogFormatError",
    "MetricsSnapshot",
    "open_study",
    "peak_flops",
    "plot_runs",
    "plot_vs",
    "pull_runs",
    "push_run",
    "PushError",
    "register_sink",
    "run_trial",
    "RunClosedError",
    "RunInUseError",
    "RunResults",
    "Sink",
    "SinkUnavailableError",
    "TrackingError",
    "TrialReporter",
    "UnknownRunError",
    "UsageError",
    "WandbPullError",
    "WandbSink",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
