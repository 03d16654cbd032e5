"""Sinks: where snapshots go besides the local files, fed off the training thread.

A sink subclasses :class:`Sink` and overrides what it needs:

- ``start(log)``: the run began (or resumed); ``log`` has config, name, notes, run_id, mirrors;
- ``emit(row)``: a metrics row was logged;
- ``emit_eval(row)``: an eval filled ``row.val_loss`` (the row as it now stands);
- ``finish(log)``: the run finished, ``log`` carries the summary;
- ``flush()``: everything received so far is written or sent;
- ``close()``: release resources (the base class makes sinks context managers);
- ``state()``: a JSON-able dict kept in the local log under ``mirrors[name]``.

:class:`SinkDispatcher` owns one thread per tracker and a bounded ``queue.Queue``. The
training thread only enqueues. A sink method that raises is reported once (per sink and
error type) and the sink is switched off; the others, and the local log, carry on. When the
queue is full, the event is dropped for the sinks (never for the local log), counted, and
reported once: ``cs336-exp push`` uploads the whole local run later.
"""

from __future__ import annotations

import queue
import threading
import warnings
from typing import Any

from .records import ExperimentLog, MetricsSnapshot

DEFAULT_QUEUE_SIZE = 100_000
_STOP = object()


class Sink:
    """Base class of sinks; every method is a no-op here."""

    name = "sink"
    #: Set by the tracker: call it (from any thread) with ``state()`` to have the mirror's
    #: progress journaled, so a crashed run resumes its mirror where it stood.
    on_state: Any = None

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
        self.finished: list[ExperimentLog] = []
        self.flushes = 0
        self.closed = False

    def start(self, log: ExperimentLog) -> None:
        self.started.append(log)

    def emit(self, row: MetricsSnapshot) -> None:
        self.rows.append(row.to_dict())

    def emit_eval(self, row: MetricsSnapshot) -> None:
        self.evals.append(row.to_dict())

    def finish(self, log: ExperimentLog) -> None:
        self.finished.append(log)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True

    def state(self) -> dict[str, Any]:
        return {"rows": len(self.rows), "evals": len(self.evals)}


class SinkDispatcher:
    """One background thread that hands tracker events to every sink, in order."""

    def __init__(self, sinks: list[Sink], maxsize: int = DEFAULT_QUEUE_SIZE) -> None:
        self.sinks = list(sinks)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._failed: dict[int, str] = {}
        self._warned: set[tuple[int, str]] = set()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="cs336-sinks", daemon=True)
        self._thread.start()

    # --- training-thread side -------------------------------------------------------
    def put(self, method: str, arg: Any) -> None:
        try:
            self._queue.put_nowait((method, arg))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                warnings.warn(
                    f"cs336_basics: the sink queue is full ({self._queue.maxsize} events): "
                    "sinks are behind and will miss events; the local log is complete, "
                    "upload it later with `cs336-exp push RUN`",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event was handled and each sink flushed."""
        done = threading.Event()
        self._put_blocking(("_flush", done), timeout)
        return done.wait(timeout)

    def close(self, timeout: float | None = 60.0) -> bool:
        """Drain, close every sink and stop the thread; False if it did not stop in time."""
        self._put_blocking(_STOP, timeout)
        self._thread.join(timeout)
        if self._thread.is_alive():
            warnings.warn(
                f"cs336_basics: sinks did not finish within {timeout} s; giving up on them "
                "(the local log is complete; `cs336-exp push RUN` uploads it later)",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        return True

    def _put_blocking(self, item: Any, timeout: float | None) -> None:
        try:
            self._queue.put(item, timeout=timeout)
        except queue.Full:
            pass

    def failures(self) -> dict[str, str]:
        """Sink name -> the error that switched it off."""
        return {self.sinks[i].name: why for i, why in self._failed.items()}

    # --- dispatcher-thread side -----------------------------------------------------
    def _call(self, index: int, sink: Sink, method: str, arg: Any) -> None:
        if index in self._failed:
            return
        try:
            if arg is None:
                getattr(sink, method)()
            else:
                getattr(sink, method)(arg)
        except Exception as exc:  # a sink must never take training down
            why = f"{type(exc).__name__}: {exc}"
            self._failed[index] = why
            key = (index, type(exc).__name__)
            if key not in self._warned:
                self._warned.add(key)
                hint = getattr(sink, "failure_hint", "")
                warnings.warn(
                    f"cs336_basics: sink {sink.name!r} failed in {method}() and is switched "
                    f"off for this run: {why}. Training and local logging go on. {hint}",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                for i, sink in enumerate(self.sinks):
                    self._call(i, sink, "flush", None)
                for sink in self.sinks:
                    try:
                        sink.close()
                    except Exception as exc:  # closing is best effort
                        warnings.warn(
                            f"cs336_basics: sink {sink.name!r} failed to close: {exc}",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                return
            method, arg = item
            if method == "_flush":
                for i, sink in enumerate(self.sinks):
                    self._call(i, sink, "flush", None)
                arg.set()
                continue
            for i, sink in enumerate(self.sinks):
                self._call(i, sink, method, arg)


def make_sink(spec: Any) -> Sink:
    """A sink from a name (``"wandb"``, ``"memory"``) or a ready ``Sink`` object."""
    from .errors import SinkUnavailableError

    if isinstance(spec, Sink):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"sinks: expected sink names or Sink objects, got {spec!r:.60}")
    name = spec.strip().lower()
    if name == "wandb":
        from .wandb_sink import WandbSink

        return WandbSink()
    if name == "memory":
        return InMemorySink()
    raise SinkUnavailableError(f"sinks: unknown sink {spec!r}; expected 'wandb' or 'memory'")
