"""``WandbSink``: mirror a run to Weights & Biases (in its own process, or on a thread).

Project: the ``project`` argument, else ``WANDB_PROJECT``, else ``cs336-basics``.
Mode: the ``mode`` argument, else wandb's own ``WANDB_MODE`` (online, offline, disabled).
Run name: the experiment name; config: the run's settings (``ExperimentConfig``, fields
not set left out) and ``cs336_local_run``, the local run id, by which ``cs336-exp import``
recognises this project's own mirrors; notes, tags, group, job type: the run's. Rows use
:class:`~.keys.Payloads` (the key table), with a ``tokens`` axis when tokens per step are
known.

When ``wandb.init`` fails online (not logged in, no network), the sink falls back to offline
mode at once and records why (``fallback`` in its state: the tracker says so on its logger),
and the run can be uploaded later with ``cs336-exp push`` or ``wandb sync``; if even that
fails, the sink fails with one error. Either way training and the local files carry on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core import env
from ..core.alerts import Alert
from ..core.log import ExperimentLog
from ..core.row import MetricsSnapshot
from ..runtime.sinks import Sink
from .client import DEFAULT_PROJECT, check_wandb_installed, import_wandb, new_run_id
from .keys import (
    COMPUTE_KEY,
    METRIC_GLOBS,
    SYSTEM_GLOB,
    SYSTEM_STEP_METRIC,
    X_AXES,
    Payloads,
    summary_payload,
)
from .runs import MIRROR_OF

logger = logging.getLogger("cs336_basics")
#: The module whose ``build_sink`` makes the sink in its mirror process.
_MIRROR_MODULE = "cs336_basics.wandb_adapter.mirror"


def _json_able(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


_MODES = (None, "online", "offline", "disabled")
_PROGRESS_EVERY_S = 0.5


def backlog_rows(
    log: ExperimentLog, through_iteration: int, known_superseded: int
) -> list[MetricsSnapshot]:
    """The rows of ``log`` a W&B run lacks that received rows up to ``through_iteration``
    while the log had ``known_superseded`` superseded rows: those after that iteration, and,
    if a restart from an older checkpoint superseded rows since, every row from the
    restart's iteration on (W&B keeps the old ones too; a pull keeps the latest)."""
    start = through_iteration + 1
    later = log.superseded_history[known_superseded:]
    if later:
        start = min(start, min(row.iteration for row in later))
    return [row for row in log.metrics_history if row.iteration >= start]


class WandbSink(Sink):
    """Mirrors rows, evals and the summary of one run to a W&B run.

    ``script_keys``: send extra metrics under the keys the script logged (``eval/runtime``,
    ``mfu``), as the W&B drop-in does, instead of under ``extra/``.
    """

    name = "wandb"
    failure_hint = "Upload the local run later with `cs336-exp push RUN` (cs336_basics.push_run)."

    def __init__(
        self,
        project: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        *,
        run_id: str | None = None,
        tags: list[str] | None = None,
        group: str | None = None,
        dir: str | None = None,
        init_kwargs: dict[str, Any] | None = None,
        in_process: bool = False,
        script_keys: bool = False,
        offline_fallback: bool = True,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode: expected one of online, offline, disabled, got {mode!r}")
        self.init_kwargs = dict(init_kwargs or {})
        if not in_process and not _json_able(self.init_kwargs):
            logger.info("init_kwargs cannot be sent to a mirror process: mirroring in-process")
            in_process = True
        self.in_process = in_process
        self.process_module = None if in_process else _MIRROR_MODULE
        # In its own process wandb is imported there (the training process only checks that
        # it is installed: importing it costs a second or more).
        self._wandb = import_wandb() if in_process else None
        if self._wandb is None:
            check_wandb_installed()
        self.project = project or env.get(env.WANDB_PROJECT) or DEFAULT_PROJECT
        self.entity = entity or env.get(env.WANDB_ENTITY) or None
        self.mode = mode
        self.tags = tags
        self.group = group
        self.dir = dir
        self.script_keys = script_keys
        self.offline_fallback = offline_fallback
        self.run: Any = None
        self.run_id = run_id
        self.url: str | None = None
        self.mode_used: str | None = None
        self.fallback: str | None = None
        self.status = "pending"
        self.rows = 0
        self.evals = 0
        self.through_iteration = -1
        #: The last system sample sent (its number) and how many alerts were sent: what a
        #: mirror starting later (or a resumed run's) sends first from the run it loads.
        self.system_through = -1
        self.alerts_sent = 0
        self._alerts_at_start: list[Alert] = []
        self.sync_dir: str | None = None
        self.on_state: Callable[[dict[str, Any]], None] | None = None
        self.durable = False
        self.replaced: str | None = None
        self.payloads = Payloads(script_keys=script_keys)
        self._backlog_from: tuple[int, int] | None = None
        self._backlog: list[MetricsSnapshot] = []
        self._last_progress = 0.0
        self._system_defined = False
        self._alert_failed = False

    def process_spec(self) -> dict[str, Any]:
        """Settings and, after :meth:`bind`, its decisions (the run, what to send first)."""
        return {
            "project": self.project,
            "entity": self.entity,
            "mode": self.mode,
            "run_id": self.run_id,
            "tags": self.tags,
            "group": self.group,
            "dir": self.dir,
            "init_kwargs": self.init_kwargs,
            "script_keys": self.script_keys,
            "rows": self.rows,
            "evals": self.evals,
            "through_iteration": self.through_iteration,
            "system_through": self.system_through,
            "alerts_sent": self.alerts_sent,
            "replaced": self.replaced,
            "backlog_from": list(self._backlog_from) if self._backlog_from else None,
        }

    @classmethod
    def from_process_spec(cls, spec: dict[str, Any]) -> WandbSink:
        """The sink :meth:`process_spec` describes, in the mirror process (wandb imported)."""
        sink = cls(
            project=spec.get("project"),
            entity=spec.get("entity"),
            mode=spec.get("mode"),
            run_id=spec.get("run_id"),
            tags=spec.get("tags"),
            group=spec.get("group"),
            dir=spec.get("dir"),
            init_kwargs=spec.get("init_kwargs"),
            in_process=True,
            script_keys=bool(spec.get("script_keys")),
        )
        sink.rows = int(spec.get("rows") or 0)
        sink.evals = int(spec.get("evals") or 0)
        sink.through_iteration = int(spec.get("through_iteration", -1))
        sink.system_through = int(spec.get("system_through", -1))
        sink.alerts_sent = int(spec.get("alerts_sent") or 0)
        sink.replaced = spec.get("replaced")
        backlog_from = spec.get("backlog_from")
        sink._backlog_from = tuple(backlog_from) if backlog_from else None
        return sink

    def prepare(self, log: ExperimentLog) -> None:
        """In the mirror process: the backlog :meth:`bind` chose, from the run as it is when
        the mirror starts."""
        if self._backlog_from is not None:
            self._backlog = backlog_rows(log, *self._backlog_from)

    # ------------------------------------------------------------ training thread
    def bind(self, log: ExperimentLog) -> dict[str, Any]:
        """Choose the W&B run before anything is sent, and the local rows to send first.

        The run recorded in ``log`` is continued where what it holds is known (its mirror
        ended it cleanly: ``durable``; or it never started: ``pending``), with the rows it
        lacks. Otherwise (a mirror killed mid-way: what wandb kept of what it was handed is
        unknown) a new W&B run gets the whole history; the old id is kept as ``replaced``.
        A run id given by the caller (the drop-in's ``init(id=...)``) is kept whatever
        happened: the rows it lacks are sent to it, or, when that is unknown, every row
        (W&B then holds some twice, at the same x; pulling keeps one per iteration).
        """
        previous = log.mirrors.get(self.name) or {}
        known = previous.get("durable") or previous.get("status") == "pending"
        if previous.get("run_id") and self.run_id in (None, previous.get("run_id")):
            if known:
                self.continue_run(previous, log)
            elif self.run_id is not None:  # the script named it: keep it, send everything
                self.run_id = str(previous["run_id"])
                self._backlog_from = (-1, 0)
                self._backlog = list(log.metrics_history)
            else:
                self.replaced = str(previous["run_id"])
                self._backlog_from = (-1, 0)
                self._backlog = list(log.metrics_history)
        if self.run_id is None:
            self.run_id = new_run_id()
        if self._backlog_from is None:  # a W&B run that has nothing yet: every row there is
            self._backlog_from = (-1, len(log.superseded_history))
        return self.state()

    def continue_run(self, previous: dict[str, Any], log: ExperimentLog) -> None:
        """Continue the W&B run ``previous`` records: same id, and as backlog the local rows
        it has not received (see :func:`backlog_rows`)."""
        self.run_id = str(previous["run_id"])
        self.rows = int(previous.get("rows") or 0)
        self.evals = int(previous.get("evals") or 0)
        self.through_iteration = int(previous.get("through_iteration", -1))
        self.system_through = int(previous.get("system_through", -1))
        self.alerts_sent = int(previous.get("alerts_sent") or 0)
        self._backlog_from = (self.through_iteration, int(previous.get("superseded") or 0))
        self._backlog = backlog_rows(log, *self._backlog_from)

    def take_backlog(self) -> list[MetricsSnapshot]:
        """The rows :meth:`start` would send first, handed to the caller instead."""
        backlog, self._backlog = self._backlog, []
        return backlog

    # ------------------------------------------------------------ sending
    def _init(self, log: ExperimentLog, mode: str | None) -> Any:
        init_kwargs = dict(self.init_kwargs)
        # The script's own config (the drop-in's) as W&B would have it, else the local one.
        config = dict(init_kwargs.pop("config", None) or log.config.settings())
        config[MIRROR_OF] = log.run_id
        if log.compute:
            config[COMPUTE_KEY] = dict(log.compute)
        kwargs: dict[str, Any] = {
            "project": self.project,
            "entity": self.entity,
            "name": log.experiment_name,
            "config": config,
            "notes": log.notes or None,
            "id": self.run_id,
            "resume": "allow",
            "reinit": "create_new",
            "tags": self.tags if self.tags is not None else (list(log.tags) or None),
            "group": self.group if self.group is not None else log.group,
            "dir": self.dir,
            **init_kwargs,
        }
        if log.job_type and "job_type" not in kwargs:
            kwargs["job_type"] = log.job_type
        if mode is not None:
            kwargs["mode"] = mode
        if self._wandb is None:
            self._wandb = import_wandb()
        self._fresh_folder(kwargs.get("dir"))
        return self._wandb.init(**kwargs)

    def _fresh_folder(self, root: Any) -> None:
        """wandb names a run's folder ``[offline-]run-<second>-<id>``: a second run of one id
        started within the same second (a quick resume) would reuse the first one's folder
        and overwrite its file. Wait for the next second when that folder exists."""
        base = Path(root or env.get(env.WANDB_DIR) or os.getcwd())
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
            taken = [
                base / folder / f"{prefix}-{stamp}-{self.run_id}"
                for folder in ("wandb", ".wandb")
                for prefix in ("offline-run", "run")
            ]
            if not any(path.exists() for path in taken):
                return
            time.sleep(0.05)

    def start(self, log: ExperimentLog) -> None:
        if self.run_id is None:
            self.bind(log)
        requested = self.mode or env.get(env.WANDB_MODE) or "online"
        try:
            self.run = self._init(log, self.mode)
        except Exception as exc:
            if requested in ("offline", "disabled", "dryrun") or not self.offline_fallback:
                raise
            self.fallback = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            logger.warning(
                "wandb.init failed (%s); mirroring offline instead. Upload later with "
                "`cs336-exp push RUN` (or `wandb sync` on the run's directory).",
                self.fallback,
            )
            self.run = self._init(log, "offline")
        run = self.run
        self.payloads = Payloads.of(log, self.script_keys)
        for axis in X_AXES:
            if axis != "flops" or self.payloads.flops_per_token is not None:
                run.define_metric(axis)
        for pattern in METRIC_GLOBS:
            run.define_metric(pattern, step_metric="gradient_step")
        if self.script_keys:  # the script's own keys: any name
            run.define_metric("*", step_metric="gradient_step")
        settings = getattr(run, "settings", None)
        self.mode_used = getattr(settings, "mode", None) or requested
        if self.fallback:
            self.mode_used = "offline"
        # (an offline run has no URL, and wandb warns when asked for one)
        offline = self.mode_used in ("offline", "dryrun", "disabled")
        self.url = None if offline else getattr(run, "url", None)
        self.sync_dir = str(getattr(settings, "sync_dir", "") or "") or None
        self.status = "running"
        if self.mode_used == "disabled":
            self.sync_dir = None  # a disabled run records nothing anywhere
        backlog, self._backlog = self._backlog, []
        self.replay(backlog)  # rows logged locally that the W&B run has not seen yet
        for sample in list(log.system_history):  # ... and samples and alerts
            self.emit_system(sample)
        self._alerts_at_start = list(log.alerts[self.alerts_sent :])
        for alert in self._alerts_at_start:
            self._alert(alert)
        self._report()

    def replay(self, rows: Iterable[MetricsSnapshot]) -> None:
        """Send existing local rows as the live run did: each train row, then its eval."""
        for row in rows:
            self.emit(row)
            if row.val_loss is not None:
                self.emit_eval(row)

    def emit(self, row: MetricsSnapshot) -> None:
        if not row.has_train_metrics and not row.extra:
            return  # an eval-only row (replayed history): emit_eval sends it
        self.run.log(self.payloads.train(row))
        self.rows += 1
        self._sent(row)

    def emit_eval(self, row: MetricsSnapshot) -> None:
        if row.val_loss is None:
            return
        self.run.log(self.payloads.eval(row))
        self.evals += 1
        self._sent(row)

    def emit_update(self, row: MetricsSnapshot, values: dict[str, Any]) -> None:
        if not values:
            return
        self.run.log(self.payloads.update(row, values))
        self.rows += 1
        self._sent(row)

    def emit_system(self, row: MetricsSnapshot) -> None:
        """A system-metrics sample: a row of ``system/`` keys against wall-clock time."""
        if not row.extra or row.iteration <= self.system_through:
            return  # (sent already: from the run as it was when the mirror started)
        self.system_through = row.iteration
        if not self._system_defined:
            self._system_defined = True
            self.run.define_metric(SYSTEM_GLOB, step_metric=SYSTEM_STEP_METRIC)
        self.run.log(self.payloads.system(row))

    def emit_alert(self, alert: Alert) -> None:
        """An alert, through ``run.alert`` (W&B sends it on as its settings say; an offline
        run records it in its file). A failure is logged once: the mirror goes on."""
        if any(alert is sent for sent in self._alerts_at_start):
            return  # (sent already: it was in the run when the mirror started)
        self._alert(alert)

    def _alert(self, alert: Alert) -> None:
        self.alerts_sent += 1
        try:
            self.run.alert(title=alert.title, text=alert.text, level=alert.level)
        except Exception as exc:
            if not self._alert_failed:
                self._alert_failed = True
                logger.warning(
                    "W&B: run.alert failed (%s: %s); alerts stay local", type(exc).__name__, exc
                )

    def _sent(self, row: MetricsSnapshot) -> None:
        self.through_iteration = max(self.through_iteration, row.iteration)
        self._maybe_report()

    def finish(self, log: ExperimentLog) -> None:
        summary = {k: v for k, v in log.summary.items() if isinstance(v, (int, float, str))}
        self.run.summary.update({**summary, **summary_payload(log)})
        if log.notes:
            self.run.notes = log.notes
        self.run.finish()
        self.durable = self.mode_used != "disabled"
        # A disabled run went nowhere: never let `push` mistake it for a complete mirror.
        self.status = "disabled" if self.mode_used == "disabled" else "finished"

    def close(self) -> None:
        if self.run is not None and self.status == "running":
            try:
                self.run.finish(exit_code=1)
                self.durable = self.mode_used != "disabled"
            finally:
                self.status = "unfinished"

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last_progress >= _PROGRESS_EVERY_S:
            self._last_progress = now
            self._report()

    def _report(self) -> None:
        if self.on_state is not None:
            self.on_state(self.state())

    def state(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "project": self.project,
            "entity": self.entity,
            "url": self.url,
            "mode": self.mode_used or self.mode,
            "status": self.status,
            "rows": self.rows,
            "evals": self.evals,
            "through_iteration": self.through_iteration,
            "system_through": self.system_through,
            "alerts_sent": self.alerts_sent,
            "sync_dir": self.sync_dir,
            # W&B confirmed the run's end, so what ``rows``/``through_iteration`` count is
            # really there (a killed client can lose what it had handed to wandb).
            "durable": self.durable,
            **({"fallback": self.fallback} if self.fallback else {}),
            **({"replaced": self.replaced} if self.replaced else {}),
        }
