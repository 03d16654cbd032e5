"""``Run``: what ``wandb.init`` returns, backed by an ``ExperimentTracker``.

The tracker starts at the first ``log`` (or ``finish``), so ``config.update`` right after
``init`` (the Hugging Face callback does this) is part of the run's config and of the W&B
mirror's; a change after that is kept locally (the document is saved again) but the W&B
mirror keeps the config it started with.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..core.config import ExperimentConfig
from ..core.values import as_number
from ..runtime.tracker import ExperimentTracker
from ._objects import Config, Summary, note_once
from ._setup import apply_config, clean_config, local_config_kwargs
from ._steps import StepLog

logger = logging.getLogger("cs336_basics")


class Run:
    """One run: ``config``, ``summary``, ``log``, ``define_metric``, ``finish``; a context
    manager (leaving the block with an exception finishes with exit code 1)."""

    def __init__(
        self,
        tracker: ExperimentTracker,
        *,
        run_id: str,
        name: str,
        project: str | None,
        entity: str | None,
        mode: str,
        group: str | None,
        job_type: str | None,
        tags: list[str],
        dir: str | None,
        raw_config: dict[str, Any],
        save_on_start: bool = False,
        on_finish: Any = None,
        resumed_after: int | None = None,
    ) -> None:
        self.tracker = tracker
        self.id = run_id
        self.name = name
        self.project = project
        self.entity = entity
        self.mode = mode
        self.group = group
        self.job_type = job_type
        self.tags = tuple(tags)
        self._dir = dir
        self._raw_config = raw_config  # the W&B mirror's config (the sink holds this dict)
        self.config = Config(self._config_changed)
        dict.update(self.config, raw_config)
        self.summary = Summary()
        self.summary._on_set = self._summary_set
        self._steps = StepLog(tracker, self.summary, resumed_after)
        self._on_finish = on_finish
        self._save_on_start = save_on_start
        self.finished = False

    # ------------------------------------------------------------------ attributes
    @property
    def dir(self) -> str:
        """A folder for the run's own files (``<log_dir>/wandb_files/<id>``, or ``dir=``)."""
        path = Path(self._dir) if self._dir else self.tracker.log_dir / "wandb_files" / self.id
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    @property
    def path(self) -> str:
        return "/".join(str(p) for p in (self.entity, self.project, self.id) if p)

    @property
    def url(self) -> str | None:
        return None

    @property
    def offline(self) -> bool:
        return self.mode == "offline"

    @property
    def disabled(self) -> bool:
        return self.mode == "disabled"

    @property
    def step(self) -> int:
        return self._steps.step

    @property
    def notes(self) -> str:
        return self.tracker.log.notes

    @notes.setter
    def notes(self, value: str) -> None:
        self.tracker.set_notes(value)

    @property
    def local_path(self) -> Path | None:
        """The run's local JSON document (known once it has logged)."""
        return self.tracker.path

    def _label(self, *args: Any, **kwargs: Any) -> None:
        """W&B's telemetry label (the Hugging Face callback sets one): nothing to record."""

    def _summary_set(self, key: str, value: Any) -> None:
        """A value the script set in ``run.summary``: kept in the run (numbers, strings and
        booleans; anything else is said once and left out)."""
        if key in ("final_train_loss", "final_val_loss"):
            return  # the guide's own: finish() records them
        if value is None or isinstance(value, (bool, str)):
            kept: Any = value
        else:
            kept = as_number(value)
            if kept is None:
                note_once("run.summary", key, f"{key!r} holds a {type(value).__name__}; not kept")
                return
        try:
            self.tracker.set_attributes(summary={key: kept})
        except (TypeError, ValueError) as exc:
            note_once("run.summary", key, f"{key!r} cannot be kept ({exc})")

    # ------------------------------------------------------------------ config
    def _config_changed(self, data: dict[str, Any]) -> None:
        data = clean_config(data)
        self._raw_config.update(data)
        kwargs = local_config_kwargs(data, self.tracker.config.experiment_name)
        del kwargs["experiment_name"]
        apply_config(self.tracker.config, kwargs)
        if self.tracker.path is not None and not self.finished:
            self.tracker.save()  # started: the document (and the journal's header) follow
            logger.info(
                "run %s: config changed after the first log (%s); kept locally, the W&B "
                "mirror keeps the config it started with",
                self.id,
                ", ".join(sorted(data)),
            )

    # ------------------------------------------------------------------ logging
    def _check_open(self, call: str) -> None:
        if self.finished:
            raise RuntimeError(
                f"{call}: run {self.id} is finished; call wandb.init(...) for a new run"
            )

    def log(
        self, data: dict[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None:
        """W&B's ``run.log``: see :mod:`._steps` for how rows become local rows."""
        self._check_open("log()")
        if self.tracker.path is None:
            self._start()
        self._steps.log(data, step=step, commit=commit)

    def _start(self) -> None:
        self.tracker.start()
        if self._save_on_start:  # no mirror journals the W&B id: put it on disk at once
            self.tracker.save()

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        step_sync: bool | None = None,
        hidden: bool | None = None,
        summary: str | None = None,
        goal: str | None = None,
        overwrite: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """``step_metric`` picks the local iteration of the rows it covers; ``summary``
        (``min``, ``max``, ``mean``, ``first``, ``last``, ``none``) what ``run.summary``
        returns. Both go to the W&B mirror only as this project's own axes."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"define_metric(name): expected a metric name or glob, got {name!r}")
        if step_metric is not None:
            self._steps.define_step_metric(name, str(step_metric))
        if summary is not None:
            self.summary.add_rule(name, summary)

    # ------------------------------------------------------------------ ending
    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Exit code 0 (or None) finishes the run; any other leaves it unfinished (as a
        crash would), so ``init(id=..., resume="allow")`` can continue it."""
        if self.finished:
            return
        self._steps.commit()
        self.finished = True
        tracker = self.tracker
        try:
            if exit_code:
                tracker.close()
            else:
                explicit = self.summary.explicit
                tracker.finish(
                    train_loss=_summary_number(explicit.get("final_train_loss")),
                    val_loss=_summary_number(explicit.get("final_val_loss")),
                )
        finally:
            if self._on_finish is not None:
                self._on_finish(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.finish(exit_code=1 if exc_type is not None else 0)

    # ------------------------------------------------------------------ not supported
    def _unsupported(self, call: str) -> None:
        note_once(call, "", "no local meaning: nothing is stored")

    def log_artifact(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("log_artifact()")

    def use_artifact(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("use_artifact()")

    def log_model(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("log_model()")

    def log_code(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("log_code()")

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("save()")

    def watch(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("watch()")

    def unwatch(self, *args: Any, **kwargs: Any) -> None:
        pass

    def alert(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("alert()")

    def mark_preempting(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<cs336_basics.wandb_compat Run {self.id} ({self.name}), mode {self.mode}>"


def _summary_number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def new_config(raw: dict[str, Any], name: str) -> ExperimentConfig:
    """The local config of a script's W&B config: only what it set (``ExperimentConfig.only``)."""
    return ExperimentConfig.only(**local_config_kwargs(raw, name))
