"""Sinks: where snapshots go besides the local files, fed off the training thread.

A sink subclasses :class:`Sink` and overrides what it needs:

- ``start(log)``: the run began (or resumed); ``log`` has config, name, notes, run_id, mirrors;
- ``emit(row)``: a metrics row was logged;
- ``emit_eval(row)``: an eval filled ``row.val_loss`` (the row as it now stands);
- ``emit_update(row, values)``: values were added to the row of an iteration (the W&B
  drop-in logging one iteration in several calls);
- ``emit_system(row)``: a system-metrics sample (``ExperimentLog.system_history``'s row:
  the values are its extra metrics);
- ``emit_alert(alert)``: an alert was recorded (``core.alerts.Alert``);
- ``finish(log)``: the run finished, ``log`` carries the summary;
- ``flush()``: everything received so far is written or sent;
- ``close()``: release resources (the base class makes sinks context managers);
- ``state()``: a JSON-able dict kept in the local log under ``mirrors[name]``.

:class:`SinkDispatcher` owns one thread per tracker and a queue of events. The training
thread only enqueues (the rows themselves are the log's, so an event costs a few dozen
bytes). A sink method that raises is reported once (per sink and error type) through the
``cs336_basics`` logger and the sink is switched off; the others, and the local log, carry
on. Rows are dropped for the sinks only past ``sink_queue_size`` waiting events (counted,
reported once; ``cs336-exp push`` uploads the whole local run later); the run's start and
finish are never dropped.

Sinks are found by name through a small registry (:func:`register_sink`); an optional
adapter is named there as ``"module:attribute"`` (``core.plugins``), so this module never
imports it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from ..core import plugins
from ..core.alerts import Alert
from ..core.errors import SinkUnavailableError
from ..core.log import ExperimentLog
from ..core.row import MetricsSnapshot

logger = logging.getLogger("cs336_basics")

DEFAULT_QUEUE_SIZE = 1_000_000
_STOP = object()


class Sink:
    """Base class of sinks; every method is a no-op here."""

    name = "sink"
    #: Set by the tracker: call it (from any thread) with ``state()`` to have the mirror's
    #: progress journaled, so a crashed run resumes its mirror where it stood.
    on_state: Any = None
    #: A sink that runs in a process of its own names the module to run there
    #: (``python -m MODULE SPEC``, see :mod:`.mirror_process`); the tracker then feeds it
    #: through the journal and calls none of its methods but ``bind`` and ``process_spec``.
    process_module: str | None = None

    def process_spec(self) -> dict[str, Any]:
        """JSON-able settings the sink's process rebuilds the sink from (after ``bind``)."""
        return {}

    def prepare(self, log: ExperimentLog) -> None:
        """In the sink's own process, before ``start``: ``log`` is the run as it was when
        the process was launched (the document then, or only the journal's header)."""

    def bind(self, log: ExperimentLog) -> dict[str, Any]:
        """Called on the training thread as the run starts (no I/O): pick ids, read
        ``log.mirrors[self.name]`` from a resumed run. Returns the state to record."""
        return self.state()

    def start(self, log: ExperimentLog) -> None:
        """The run began or resumed."""

    def emit(self, row: MetricsSnapshot) -> None:
        """A metrics row was logged."""

    def emit_eval(self, row: MetricsSnapshot) -> None:
        """An evaluation was recorded on ``row``."""

    def emit_update(self, row: MetricsSnapshot, values: dict[str, Any]) -> None:
        """``values`` (row fields and extra metrics by name) were added to ``row``."""

    def emit_system(self, row: MetricsSnapshot) -> None:
        """A system-metrics sample was taken (its values are ``row.extra``)."""

    def emit_alert(self, alert: Alert) -> None:
        """An alert (NaN/inf loss, spike, explosion) was recorded."""

    def finish(self, log: ExperimentLog) -> None:
        """The run finished; ``log`` has its summary."""

    def flush(self) -> None:
        """Make sure what was received is written or sent."""

    def close(self) -> None:
        """Release resources; called once, after ``finish`` or at shutdown."""

    def state(self) -> dict[str, Any]:
        """What the local log should remember about this mirror (e.g. a remote run id)."""
        return {}

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InMemorySink(Sink):
    """Keeps copies of what it receives: for tests and for users' own checks."""

    name = "memory"

    def __init__(self) -> None:
        self.started: list[ExperimentLog] = []
        self.rows: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.system: list[dict[str, Any]] = []
        self.alerts: list[Alert] = []
        self.finished: list[ExperimentLog] = []
        self.flushes = 0
        self.closed = False

    def start(self, log: ExperimentLog) -> None:
        self.started.append(log)

    def emit(self, row: MetricsSnapshot) -> None:
        self.rows.append(row.to_dict())

    def emit_eval(self, row: MetricsSnapshot) -> None:
        self.evals.append(row.to_dict())

    def emit_update(self, row: MetricsSnapshot, values: dict[str, Any]) -> None:
        self.updates.append({"iteration": row.iteration, **values})

    def emit_system(self, row: MetricsSnapshot) -> None:
        self.system.append(row.to_dict())

    def emit_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def finish(self, log: ExperimentLog) -> None:
        self.finished.append(log)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True

    def state(self) -> dict[str, Any]:
        return {"rows": len(self.rows), "evals": len(self.evals)}


#: Events that are never dropped, however far behind the sinks are.
LIFECYCLE = frozenset({"start", "finish"})


class SinkDispatcher:
    """One background thread that hands tracker events to every sink, in order.

    The training thread only appends to a deque (:meth:`put`). Rows are dropped for the
    sinks (never for the local log) only when more than ``maxsize`` events already wait;
    the run's start and finish are never dropped. Every problem (a sink raising, events
    dropped, a sink that does not finish in time) goes to the ``cs336_basics`` logger, once
    per sink and kind of error; nothing here raises into the training loop or stops the
    thread, whatever a ``warnings`` filter says.
    """

    def __init__(self, sinks: list[Sink], maxsize: int = DEFAULT_QUEUE_SIZE) -> None:
        self.sinks = list(sinks)
        self.maxsize = maxsize
        self._events: deque[Any] = deque()
        self._wakeup = threading.Event()
        self._failed: dict[int, str] = {}
        self._reported: set[tuple[int, str]] = set()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="cs336-sinks", daemon=True)
        self._thread.start()

    # --- training-thread side -------------------------------------------------------
    def put(self, method: str, arg: Any) -> None:
        events = self._events
        if len(events) >= self.maxsize and method not in LIFECYCLE:
            self.dropped += 1
            if self.dropped == 1:
                logger.warning(
                    "the sinks are %d events behind: further rows are not sent to them "
                    "(the local log is complete; upload it later with `cs336-exp push RUN`)",
                    len(events),
                )
            return
        events.append((method, arg))
        if not self._wakeup.is_set():
            self._wakeup.set()

    @property
    def backlog(self) -> int:
        """Events queued and not yet handed to the sinks."""
        return len(self._events)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event was handled and each sink flushed."""
        done = threading.Event()
        self._events.append(("_flush", done))
        self._wakeup.set()
        return done.wait(timeout)

    def close(self, timeout: float | None = 60.0) -> bool:
        """Drain, close every sink and stop the thread; False if it did not stop in time."""
        self._events.append(_STOP)
        self._wakeup.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning(
                "sinks did not finish within %s s (%d events not sent); giving up on them. "
                "The local log is complete; `cs336-exp push RUN` uploads it later.",
                timeout,
                self.backlog,
            )
            return False
        return True

    def failures(self) -> dict[str, str]:
        """Sink name -> the error that switched it off."""
        return {self.sinks[i].name: why for i, why in self._failed.items()}

    # --- dispatcher-thread side -----------------------------------------------------
    def _report(self, index: int, sink: Sink, method: str, exc: Exception, fatal: bool) -> None:
        key = (index, type(exc).__name__)
        if key in self._reported:
            return
        self._reported.add(key)
        if fatal:
            hint = getattr(sink, "failure_hint", "")
            logger.error(
                "sink %r failed in %s() and is switched off for this run: %s: %s. "
                "Training and local logging go on. %s",
                sink.name,
                method,
                type(exc).__name__,
                exc,
                hint,
            )
        else:
            logger.warning(
                "sink %r failed to %s: %s: %s", sink.name, method, type(exc).__name__, exc
            )

    def _call(self, index: int, sink: Sink, method: str, arg: Any) -> None:
        if index in self._failed:
            return
        try:
            if arg is None:
                getattr(sink, method)()
            elif type(arg) is tuple:  # emit_update: (row, values)
                getattr(sink, method)(*arg)
            else:
                getattr(sink, method)(arg)
        except Exception as exc:  # a sink must never take training down
            self._failed[index] = f"{type(exc).__name__}: {exc}"
            self._report(index, sink, method, exc, fatal=True)

    def _handle(self, item: Any) -> bool:
        """Hand one event to the sinks; False once the stop event was handled."""
        if item is _STOP:
            for i, sink in enumerate(self.sinks):
                self._call(i, sink, "flush", None)
            for i, sink in enumerate(self.sinks):
                try:
                    sink.close()
                except Exception as exc:  # closing is best effort
                    self._report(i, sink, "close", exc, fatal=False)
            return False
        method, arg = item
        if method == "_flush":
            for i, sink in enumerate(self.sinks):
                self._call(i, sink, "flush", None)
            arg.set()
            return True
        for i, sink in enumerate(self.sinks):
            self._call(i, sink, method, arg)
        return True

    def _run(self) -> None:
        events, wakeup = self._events, self._wakeup
        while True:
            wakeup.clear()
            while events:
                item = events.popleft()
                try:
                    if not self._handle(item):
                        return
                except Exception:  # a bug here must not leave the queue unserved
                    logger.exception("the sink dispatcher met an unexpected error")
            wakeup.wait(0.5)


#: Sink names and what makes them: a class, or ``"module:attribute"`` imported on first use
#: (so the core never imports an optional adapter until a user asks for it).
_REGISTRY: dict[str, Any] = {
    "memory": InMemorySink,
    "wandb": plugins.WANDB_SINK,
}


def register_sink(name: str, factory: Any) -> None:
    """Make ``sinks=[name]`` (and ``CS336_SINKS=name``) build a sink with ``factory()``.

    ``factory`` is a callable returning a :class:`Sink`, or a ``"module:attribute"`` string
    naming one, imported when the sink is first asked for.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise TypeError(f"factory: expected a callable or 'module:attribute', got {factory!r:.60}")
    _REGISTRY[name.strip().lower()] = factory


def make_sink(spec: Any) -> Sink:
    """A sink from a registered name (``"wandb"``, ``"memory"``) or a ready ``Sink`` object."""
    if isinstance(spec, Sink):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"sinks: expected sink names or Sink objects, got {spec!r:.60}")
    factory = _REGISTRY.get(spec.strip().lower())
    if factory is None:
        known = ", ".join(repr(n) for n in sorted(_REGISTRY))
        raise SinkUnavailableError(f"sinks: unknown sink {spec!r}; expected one of {known}")
    if isinstance(factory, str):
        factory = plugins.load(factory)
    sink = factory()
    if not isinstance(sink, Sink):
        raise TypeError(f"sinks: {spec!r} made a {type(sink).__name__}, not a Sink")
    return sink
