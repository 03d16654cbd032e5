"""Hyperparameter sweeps: every trial one tracked run, on Optuna or under a W&B sweep agent.

Optuna (the ``sweep`` extra: ``pip install 'cs336-basics[sweep]'``)::

    from cs336_basics.sweep import open_study, run_trial

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 3e-2, log=True)
        return run_trial(trial, lambda report: my_train(lr, report=report))

    study = open_study("lr_sweep", log_dir="experiment_logs")  # storage: a file there
    study.optimize(objective, n_trials=20)

and in ``my_train``, which creates its tracker as usual::

    config = ExperimentConfig(experiment_name=..., max_learning_rate=lr, **report.config)
    tracker = ExperimentTracker(config, log_dir="experiment_logs")
    report.attach(tracker)               # before start(): group = the study's name
    for it in range(max_iters):
        ...
        if (it + 1) % eval_interval == 0:
            val = evaluate()
            tracker.log_eval(iteration=it, val_loss=val)
            if report(it, val):          # reported to Optuna; True: the pruner stopped it
                break
    tracker.finish()

What a trial's run holds: the group is the study's name; the config has ``optuna_study``
and ``optuna_trial`` (the trial's number) beside the hyperparameters the training used; the
trial's Optuna user attributes name the run (``run_id``, ``run_file``). A pruned trial's run
is finished normally (its document's ``status`` is ``finished``), and carries the fact as
data: ``summary["pruned"] = True`` and ``summary["pruned_at_iteration"]``, the tag
``pruned``, and a note saying when and at what value. ``ExperimentLog.results().status``,
and so every listing, the sweep table and the page, show it as ``pruned``. A loss that is
NaN or infinite stops the trial the same way (it is then shown as ``diverged``).

Storage (:func:`open_study`): by default Optuna's journal file in the log directory
(``<study>.optuna.log``, see ``store.layout.study_storage``), which every worker on this
machine (or on a shared file system) opens; a URL (``sqlite:///study.db``,
``postgresql://user@host/db``) for an RDB shared by many machines, or another journal file's
path. Start the same command on every machine: each worker asks the storage for its next
trial, so no trial runs twice.

W&B sweep agents: ``wandb agent`` starts the training script with the hyperparameters as
``--name=value`` arguments and ``WANDB_SWEEP_ID``/``WANDB_RUN_ID`` in its environment;
:func:`agent_run` reads them, and the script's ``WandbSink(run_id=...)`` joins the run the
agent created (see ``examples/training_together.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core import env
from .core.config import OPTUNA_STUDY, OPTUNA_TRIAL
from .core.log import PRUNED
from .core.values import to_float
from .runtime.tracker import ExperimentTracker
from .store.layout import study_storage

__all__ = [
    "TrialReporter",
    "agent_run",
    "import_optuna",
    "open_study",
    "run_trial",
    "storage_for",
]

#: ``(sweep id, W&B run id)`` when ``wandb agent`` started this process, else None.
agent_run = env.wandb_agent_run


def import_optuna() -> Any:
    """optuna, or an ImportError that says how to install it."""
    try:
        import optuna
    except ImportError as exc:
        raise ImportError(
            "sweeps need optuna: pip install 'cs336-basics[sweep]' (or pip install optuna)"
        ) from exc
    return optuna


def storage_for(storage: str | Path | None, log_dir: str | Path, study: str) -> Any:
    """What :func:`open_study` hands Optuna: for ``None`` a journal file in ``log_dir``
    (``<study>.optuna.log``); for a URL (``sqlite:///x.db``, ``postgresql://...``) the URL,
    an RDB storage Optuna opens; for any other text or path, a journal file there."""
    optuna = import_optuna()
    if isinstance(storage, str) and "://" in storage:
        return storage
    if storage is None:
        path = study_storage(Path(log_dir), study)
    else:
        path = Path(storage)
        if path.is_dir():
            raise ValueError(f"storage: {str(storage)!r} is a folder; expected a file or a URL")
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def open_study(
    study_name: str,
    *,
    log_dir: str | Path = "experiment_logs",
    storage: str | Path | None = None,
    pruner: Any = None,
    sampler: Any = None,
    direction: str = "minimize",
) -> Any:
    """The Optuna study ``study_name``, created or joined (every worker calls this with the
    same name and storage). ``storage``: see :func:`storage_for`; ``pruner``: Optuna's
    ``MedianPruner()`` by default (a trial whose best value so far is worse than the median
    of completed trials at the same eval is stopped); ``sampler``: Optuna's default (TPE)."""
    optuna = import_optuna()
    if not isinstance(study_name, str) or not study_name.strip():
        raise ValueError(f"study_name: expected a non-empty string, got {study_name!r}")
    return optuna.create_study(
        study_name=study_name,
        storage=storage_for(storage, log_dir, study_name),
        pruner=pruner if pruner is not None else optuna.pruners.MedianPruner(),
        sampler=sampler,
        direction=direction,
        load_if_exists=True,
    )


class TrialReporter:
    """Connects one training run to one Optuna trial: what a training function gets as
    ``report`` from :func:`run_trial`.

    - :attr:`config`: values for the run's ``ExperimentConfig`` (study and trial number);
    - :meth:`attach`: call with the tracker before ``start()``: the run's group becomes the
      study's name (so the W&B mirror groups the trials too);
    - calling it, ``report(iteration, value)``, at every eval: the value goes to Optuna at
      step ``iteration``; it returns True when the trial should stop (the pruner says so, or
      the value is NaN/inf), having marked the run as pruned (see the module docstring).
      Stop training then and finish the run as usual.
    """

    def __init__(self, trial: Any, *, metric: str = "val_loss", group: str | None = None):
        self.trial = trial
        self.metric = metric
        self.study_name: str = trial.study.study_name
        self.group = group or self.study_name
        self.tracker: ExperimentTracker | None = None
        self.best: float | None = None
        self.reports = 0
        self.pruned = False
        self.pruned_at: int | None = None
        self.note: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        """``{"optuna_study": ..., "optuna_trial": ...}``, for the run's config."""
        return {OPTUNA_STUDY: self.study_name, OPTUNA_TRIAL: self.trial.number}

    def attach(self, tracker: ExperimentTracker) -> None:
        """Group the run with the study's other trials; call before ``tracker.start()``."""
        self.tracker = tracker
        tracker.set_attributes(group=self.group)

    def _name_run(self) -> None:
        tracker = self.tracker
        if tracker is not None and tracker.path is not None and tracker.run_id:
            self.trial.set_user_attr("run_id", tracker.run_id)
            self.trial.set_user_attr("run_file", str(tracker.path))

    def __call__(self, iteration: int, value: Any) -> bool:
        """Report ``value`` (the metric at ``iteration``); True: stop, the run is pruned."""
        value = float(to_float(self.metric, value))
        if self.reports == 0:
            self._name_run()
        self.reports += 1
        if not math.isfinite(value):
            self._mark(iteration, value, f"{self.metric} is {value}")
            return True
        self.best = value if self.best is None else min(self.best, value)
        self.trial.report(value, step=int(iteration))
        if self.trial.should_prune():
            pruner = type(self.trial.study.pruner).__name__
            self._mark(iteration, value, f"{pruner}: {self.metric} {value:.4f}")
            return True
        return False

    def _mark(self, iteration: int, value: float, why: str) -> None:
        self.pruned = True
        self.pruned_at = int(iteration)
        self.note = f"pruned by Optuna (study {self.study_name}, trial {self.trial.number}) "
        self.note += f"at iteration {iteration}: {why}"
        tracker = self.tracker
        if tracker is None:
            return
        log = tracker.log
        tags = list(log.tags)
        tracker.set_attributes(
            tags=tags if PRUNED in tags else [*tags, PRUNED],
            summary={PRUNED: True, "pruned_at_iteration": int(iteration)},
        )
        tracker.set_notes(f"{log.notes}\n{self.note}" if log.notes else self.note)


def run_trial(
    trial: Any,
    train_fn: Callable[[TrialReporter], Any],
    *,
    metric: str = "val_loss",
    group: str | None = None,
) -> float:
    """Run one trial: ``train_fn(report)`` trains one tracked run, calling ``report`` (a
    :class:`TrialReporter`) at every eval. Returns the best value reported (the objective);
    raises ``optuna.TrialPruned`` once ``train_fn`` returns after the pruner stopped it.
    ``group``: the runs' group (default: the study's name)."""
    reporter = TrialReporter(trial, metric=metric, group=group)
    train_fn(reporter)
    reporter._name_run()
    if reporter.pruned:
        raise import_optuna().TrialPruned(reporter.note)
    if reporter.best is None:
        raise ValueError(
            f"train_fn reported no {metric}: call report(iteration, {metric}) at every eval"
        )
    return reporter.best
