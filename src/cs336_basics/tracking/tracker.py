"""``ExperimentTracker``: what the training loop calls.

On the training thread each ``log_metrics`` call validates its values, builds one
``MetricsSnapshot``, applies it to the in-memory ``ExperimentLog`` and queues it for the
journal writer thread and, if any, the sink dispatcher thread. Nothing on this path touches
the disk or the network.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from . import env
from . import journal as records_out
from .codec import document_meta, dumps
from .deferred import DeferredRows, has_device_values
from .errors import LogFormatError, RunClosedError
from .journal import JournalWriter, kept_journals, kept_path, segment_path
from .mirror_process import MirrorProcess, log_path, snapshot_path
from .records import (
    ROW_FIELDS,
    ExperimentConfig,
    ExperimentLog,
    MetricsSnapshot,
    apply_eval,
    apply_finish,
    apply_metrics,
    superseded_step,
)
from .saver import DocumentSaver, Snapshot
from .sinks import DEFAULT_QUEUE_SIZE, Sink, SinkDispatcher, make_sink
from .storage import (
    JOURNAL_SUFFIX,
    RunLock,
    claim_stem,
    load_run,
    mirror_state_path,
    now_iso,
    remove_stale_temps,
    write_document,
    write_snapshot,
)
from .text import format_summary
from .values import MAX_INDEX, optional_float, to_float, to_int

logger = logging.getLogger("cs336_basics")
#: A row holding accelerator tensors is converted (off the training thread) once it has
#: waited this long, so it reaches the journal within about a second; eval, save and finish
#: convert at once.
DEFERRED_MAX_AGE = 0.5
#: Names an extra metric may not take: the guide's row fields.
_RESERVED_METRICS = frozenset(ROW_FIELDS)

_live: weakref.WeakSet[ExperimentTracker] = weakref.WeakSet()
_atexit_registered = False
_atexit_lock = threading.Lock()


def _close_all_at_exit() -> None:
    for tracker in list(_live):
        try:
            tracker.close()
        except Exception:  # at interpreter exit nothing may raise
            pass


def _register(tracker: ExperimentTracker) -> None:
    global _atexit_registered
    with _atexit_lock:
        if not _atexit_registered:
            atexit.register(_close_all_at_exit)
            _atexit_registered = True
    _live.add(tracker)


def _sinks_from(spec: Any) -> list[Sink]:
    if spec is None:
        names = [s for s in (env.get(env.SINKS) or "").split(",") if s.strip()]
        return [make_sink(name) for name in names]
    if isinstance(spec, (str, Sink)):
        spec = [spec]
    if not isinstance(spec, Iterable):
        raise TypeError(f"sinks: expected a list of names or Sink objects, got {spec!r:.60}")
    return [make_sink(item) for item in spec]


def _check_extra_names(where: str, extra: dict[str, Any]) -> None:
    if "" in extra:
        raise ValueError(f"{where}: an extra metric needs a name, got ''")
    clash = _RESERVED_METRICS.intersection(extra)
    if clash:
        name = sorted(clash)[0]
        raise ValueError(
            f"{where}: {name!r} is one of the guide's row fields, not an extra metric "
            f"(reserved: {', '.join(ROW_FIELDS)}); pick another name"
        )


def _check_config(config: ExperimentConfig) -> None:
    """Refuse, at creation, a config the JSON document could not hold (names the key)."""
    for key, value in config.to_dict().items():
        try:
            dumps(value)
        except TypeError as exc:
            raise TypeError(f"config.{key}: {exc}") from exc


class ExperimentTracker:
    """Tracks one training run: local JSON + journal, and optional sinks.

    Args:
        config: the run's ``ExperimentConfig``.
        log_dir: directory of the run's files (created if missing).
        sinks: sink names (``"wandb"``) or ``Sink`` objects; ``None`` reads ``CS336_SINKS``.
        resume: a run to continue: the path of its ``.json``/``.jsonl`` or its
            ``ExperimentLog`` (loaded from disk). History, gradient steps and wall-clock go on.
        all_ranks: under torch.distributed only rank 0 tracks unless this is True.
        flush_interval: seconds between journal writes (crash loses at most about this).
        sink_queue_size: events that may wait for the sinks before rows are no longer sent
            to them (the run's start and finish always are).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        log_dir: str | Path = "experiment_logs",
        *,
        sinks: Any = None,
        resume: str | Path | ExperimentLog | None = None,
        all_ranks: bool = False,
        flush_interval: float = 0.25,
        sink_queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        if not isinstance(config, ExperimentConfig):
            raise TypeError(f"config: expected an ExperimentConfig, got {type(config).__name__}")
        if not isinstance(flush_interval, (int, float)) or not 0 < flush_interval <= 1:
            raise ValueError(f"flush_interval: expected seconds in (0, 1], got {flush_interval!r}")
        if type(sink_queue_size) is not int or sink_queue_size < 1:
            raise ValueError(
                f"sink_queue_size: expected a positive integer, got {sink_queue_size!r}"
            )
        _check_config(config)
        self.config = config
        self.log_dir = Path(log_dir)
        self.enabled = all_ranks or env.process_rank() == 0
        self.flush_interval = float(flush_interval)
        self._log = ExperimentLog(config=config)
        self._resume = resume
        self._sinks = _sinks_from(sinks) if self.enabled else []
        self._sink_queue_size = sink_queue_size
        self._dispatcher: SinkDispatcher | None = None
        self._mirrors: list[MirrorProcess] = []
        self._journal: JournalWriter | None = None
        self._saver: DocumentSaver | None = None
        self._journal_base = 0
        self._lock: RunLock | None = None
        self._path: Path | None = None
        self._steps_done = 0
        self._t0 = 0.0
        self._offset = 0.0
        self._save_id = 0
        self._dirty = True
        self._started = False
        self._finished = False
        self._closed = False
        self._accepting = False  # between start() and finish()/close(): rows are taken
        self._deferred = DeferredRows(self._emit, DEFERRED_MAX_AGE)
        self._last_read: MetricsSnapshot | None = None
        if self.enabled:
            _register(self)

    # ------------------------------------------------------------------ properties
    @property
    def log(self) -> ExperimentLog:
        """The run as it stands (accelerator values are converted first)."""
        self._deferred.resolve()
        return self._log

    @property
    def path(self) -> Path | None:
        """The run's JSON document (known once started)."""
        return self._path

    @property
    def run_id(self) -> str:
        return self._log.run_id

    @property
    def gradient_step(self) -> int:
        """Optimizer steps done so far (``increment_gradient_step`` calls)."""
        return self._steps_done

    @gradient_step.setter
    def gradient_step(self, value: int) -> None:
        self._steps_done = to_int("gradient_step", value)

    @property
    def last_read_row(self) -> MetricsSnapshot | None:
        """The latest logged row whose values are all numbers already: for a progress bar.

        Never waits for the device: a row logged with accelerator tensors shows here once
        they were read off the training thread (within about a second).
        """
        return self._last_read

    @property
    def sinks(self) -> list[Sink]:
        return list(self._sinks)

    def health(self) -> dict[str, Any]:
        """Whether everything logged is safely on its way, for a loop or a monitor to check.

        ``journal`` is ``"ok"``, ``"behind"`` (an I/O error: ``journal_error`` says which;
        ``journal_backlog`` records wait in memory and are retried), or ``"closed"``.
        ``waiting_device_rows``: rows whose tensors are not read yet; ``device_error``: the
        last values that could not be read (left out, rows kept). ``sink_backlog``:
        events the sinks have not handled yet; ``sinks``: each mirror's recorded state.
        """
        self._refresh_mirrors()
        journal = self._journal
        dispatcher = self._dispatcher
        saver = self._saver
        save_error = saver.error if saver is not None else None
        return {
            "save": "failed" if save_error else "writing" if saver and saver.busy else "ok",
            "save_error": save_error,
            "last_save_seconds": saver.last_duration if saver is not None else None,
            "journal": "closed" if journal is None else "behind" if journal.error else "ok",
            "journal_error": journal.error if journal is not None else None,
            "journal_backlog": journal.backlog if journal is not None else 0,
            "waiting_device_rows": len(self._deferred),
            "device_error": self._deferred.last_dropped,
            "sink_backlog": dispatcher.backlog if dispatcher is not None else 0,
            "sinks_dropped": dispatcher.dropped if dispatcher is not None else 0,
            "sinks": {name: dict(state) for name, state in self._log.mirrors.items()},
            "mirror_processes": {m.name: m.alive for m in self._mirrors},
        }

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ExperimentTracker:
        """Open the run's files (or continue the resumed run) and start the sinks."""
        if not self.enabled or self._started:
            return self
        if self._closed:
            raise RunClosedError("start(): this tracker was closed; create a new one")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self._resume is not None:
            self._continue(self._resume)
        else:
            when = datetime.now()
            stem = claim_stem(self.log_dir, self.config.experiment_name, when)
            self._lock = RunLock.acquire(self.log_dir, stem)
            self._log.start_time = when.isoformat()
            self._log.run_id = stem
            self._path = self.log_dir / f"{stem}.json"
            self._log.source = str(self._path)
            self._journal = self._open_journal(None)
        assert self._path is not None
        self._saver = DocumentSaver(self._path, self._remove_kept)  # (its thread)
        self._t0 = time.perf_counter()
        self._started = True
        self._accepting = True
        in_process = []
        for sink in self._sinks:
            self._record_mirror(sink.name, sink.bind(self._log))
            if sink.process_module:
                self._start_mirror(sink)
            else:
                sink.on_state = lambda state, name=sink.name: self._record_mirror(name, state)
                in_process.append(sink)
        if in_process:
            self._dispatcher = SinkDispatcher(in_process, self._sink_queue_size)
            self._dispatcher.put("start", self._log)
        return self

    def _start_mirror(self, sink: Sink) -> None:
        """Launch a sink's own process; it follows the journal (see ``mirror_process``)."""
        assert self._path is not None and self._journal is not None
        try:
            self._mirrors.append(
                MirrorProcess(sink, self._path, self._journal.path, self._journal_base)
            )
        except OSError as exc:
            logger.error("could not start the %s mirror process: %s", sink.name, exc)
            state = dict(self._log.mirrors.get(sink.name) or {})
            state.update(status="failed", error=f"not started: {exc}")
            self._record_mirror(sink.name, state)

    def _refresh_mirrors(self) -> None:
        """Copy each mirror process's recorded state into the log."""
        for mirror in self._mirrors:
            state = mirror.state()
            if state:
                self._log.mirrors[mirror.name] = state

    def _open_journal(self, base: int | None) -> JournalWriter:
        assert self._path is not None
        self._journal_base = base or 0
        return JournalWriter(
            self._path.with_suffix(JOURNAL_SUFFIX),
            self._header(base),
            self.flush_interval,
            before_write=self._deferred.resolve_old,  # the thread reports what fails
        )

    def _record_mirror(self, name: str, state: dict[str, Any]) -> None:
        """Keep a sink's state in the log and the journal (safe from the dispatcher thread)."""
        if not state:
            return
        self._log.mirrors[name] = dict(state)
        journal = self._journal
        if journal is not None:
            journal.append(records_out.mirror_record(name, state))

    def _header(self, base: int | None) -> bytes:
        return records_out.encode_header(self._log, base, os.getpid(), socket.gethostname())

    def _continue(self, resume: str | Path | ExperimentLog) -> None:
        if isinstance(resume, ExperimentLog):
            if not resume.source:
                raise ValueError(
                    "resume: this ExperimentLog has no file (source is None); pass the path "
                    "of its .json or .jsonl instead"
                )
            resume = resume.source
        path = Path(resume)
        if not path.exists() and not path.with_suffix(JOURNAL_SUFFIX).exists():
            raise FileNotFoundError(f"resume: no experiment log at {path}")
        self._path = path.with_suffix(".json")
        self.log_dir = self._path.parent
        self._lock = RunLock.acquire(self.log_dir, self._path.stem)
        try:
            try:
                log, save_id = load_run(path)
            except LogFormatError as exc:
                raise LogFormatError(f"resume: {exc}") from exc
            self._adopt(log, save_id)
        except BaseException:
            self._lock.release()
            self._lock = None
            raise

    def _adopt(self, log: ExperimentLog, save_id: int) -> None:
        """Continue the loaded run with this tracker's config (a change is recorded)."""
        assert self._path is not None
        changed = log.config.differences(self.config)
        if log.config.experiment_name != self.config.experiment_name:
            changed["experiment_name"] = (
                log.config.experiment_name,
                self.config.experiment_name,
            )
        if changed:
            last = log.last_iteration
            log.config_changes.append(
                {
                    "time": now_iso(),
                    "after_iteration": last,
                    "previous": {k: old for k, (old, _) in changed.items()},
                    "new": {k: new for k, (_, new) in changed.items()},
                }
            )
            logger.warning(
                "resuming %s with a different config (%s); the previous values are kept in "
                "the run's config_changes",
                self._path.stem,
                ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items()),
            )
        log.config = self.config
        log.status = "running"
        log.end_time = None
        log.source = str(self._path)
        self._log = log
        history = log.metrics_history
        if history:
            self._steps_done = history[-1].gradient_step
            self._offset = history[-1].wallclock_time
        if log.duration_seconds is not None:
            self._offset = max(self._offset, log.duration_seconds)
        self._save_id = save_id + 1
        write_document(self._path, log, self._save_id)
        self._journal = self._open_journal(self._save_id)
        self._remove_kept(self._save_id)
        remove_stale_temps(self._path)
        self._dirty = False

    def elapsed(self) -> float:
        """Seconds of training so far (the wall-clock axis)."""
        return time.perf_counter() - self._t0 + self._offset

    # ------------------------------------------------------------------ logging
    def log_metrics(
        self,
        /,
        iteration: int,
        train_loss: Any = None,
        learning_rate: Any = None,
        tokens_per_sec: Any = None,
        iter_time_ms: Any = None,
        *,
        gradient_step: int | None = None,
        val_loss: Any = None,
        **extra: Any,
    ) -> MetricsSnapshot | None:
        """Record one training row. Values may be numbers or 0-d (device) tensors.

        ``gradient_step`` defaults to the optimizer step this iteration belongs to
        (``increment_gradient_step`` calls so far + 1). Extra keyword metrics are kept.
        """
        if not self.enabled:
            return None
        if not self._accepting:  # not started yet, or already finished/closed
            self._open_for_logging("log_metrics")
        it = (
            iteration
            if type(iteration) is int and 0 <= iteration <= 9007199254740991  # MAX_INDEX
            else to_int("iteration", iteration)
        )
        last = self._log.metrics_history.last_iteration
        if last is not None and it <= last:
            step = superseded_step(self._log, it)
            if step is not None:
                self._steps_done = step - 1
        step = (
            self._steps_done + 1
            if gradient_step is None
            else to_int("gradient_step", gradient_step)
        )
        if extra and ("wallclock_time" in extra or "" in extra):  # what no parameter catches
            _check_extra_names("log_metrics", extra)
        row = MetricsSnapshot(
            it,
            step,
            time.perf_counter() - self._t0 + self._offset,
            optional_float("train_loss", train_loss, allow_device=True),
            optional_float("val_loss", val_loss, allow_device=True),
            optional_float("learning_rate", learning_rate, allow_device=True),
            optional_float("tokens_per_sec", tokens_per_sec, allow_device=True),
            optional_float("iter_time_ms", iter_time_ms, allow_device=True),
            {k: to_float(k, v, allow_device=True) for k, v in extra.items()} if extra else None,
        )
        apply_metrics(self._log, row)
        self._dirty = True
        if self._deferred.active or has_device_values(row):
            self._deferred.add(row)
        else:
            self._emit(row)
        return row

    def _emit(self, row: MetricsSnapshot) -> None:
        self._last_read = row
        journal = self._journal
        if journal is not None:
            journal.append(row)
        if self._dispatcher is not None:
            self._dispatcher.put("emit", row)

    def increment_gradient_step(self, n: int = 1) -> int:
        """Count ``n`` optimizer steps; returns the total."""
        self._steps_done += n if type(n) is int and 0 < n <= MAX_INDEX else to_int("n", n)
        return self._steps_done

    def log_eval(
        self,
        /,
        iteration: int,
        train_loss: Any = None,
        val_loss: Any = None,
        **extra: Any,
    ) -> MetricsSnapshot | None:
        """Record validation results at ``iteration`` (fills that row, or adds one)."""
        if not self.enabled:
            return None
        if not self._accepting:
            self._open_for_logging("log_eval")
        it = to_int("iteration", iteration)
        vl = optional_float("val_loss", val_loss)
        tl = optional_float("train_loss", train_loss)
        if extra:
            _check_extra_names("log_eval", extra)
        extras = {k: to_float(k, v) for k, v in extra.items()} or None
        self._deferred.resolve()
        step = max(self._steps_done, 1)
        now = self.elapsed()
        row = apply_eval(self._log, it, step, now, vl, tl, extras)
        self._dirty = True
        assert self._journal is not None
        self._journal.append(records_out.eval_record(it, step, now, vl, tl, extras))
        self._journal.wake()
        if self._dispatcher is not None:
            self._dispatcher.put("emit_eval", row)
        return row

    def _open_for_logging(self, what: str) -> None:
        if self._finished:
            raise RunClosedError(
                f"{what}(): run {self.run_id} is already finished; to continue it, create "
                f"ExperimentTracker(config, resume={str(self._path)!r})"
            )
        if self._closed:
            raise RunClosedError(
                f"{what}(): this tracker was closed; to continue the run, create "
                f"ExperimentTracker(config, resume={str(self._path)!r})"
            )
        self.start()

    def set_notes(self, notes: str) -> None:
        """Replace the run's notes (also done by ``finish(notes=...)``)."""
        if not isinstance(notes, str):
            raise TypeError(f"notes: expected a string, got {type(notes).__name__}")
        self._log.notes = notes
        self._dirty = True
        if self._journal is not None:
            self._journal.append(records_out.notes_record(notes))

    # ------------------------------------------------------------------ ending
    def finish(
        self,
        train_loss: Any = None,
        val_loss: Any = None,
        notes: str | None = None,
        *,
        sink_timeout: float = 60.0,
    ) -> ExperimentLog:
        """End the run: summary (best/final/duration), sinks finished, JSON saved.

        If the save fails (disk full, ...) the error is raised and the run stays in memory
        and in its journal; calling ``finish()`` again tries the save again.
        """
        if not self.enabled:
            return self._log
        if self._finished:
            if self._dirty:  # the final save failed before: try it again
                self.save()
            return self._log
        if self._closed:
            raise RunClosedError(
                f"finish(): this tracker was closed; to finish the run, create "
                f"ExperimentTracker(config, resume={str(self._path)!r}) and finish that one"
            )
        if not self._started:
            self.start()
        if notes is not None and not isinstance(notes, str):
            raise TypeError(f"notes: expected a string, got {type(notes).__name__}")
        if (
            isinstance(sink_timeout, bool)
            or not isinstance(sink_timeout, (int, float))
            or not (sink_timeout >= 0)
        ):
            raise ValueError(f"sink_timeout: expected seconds >= 0, got {sink_timeout!r}")
        tl = optional_float("train_loss", train_loss)
        vl = optional_float("val_loss", val_loss)
        self._deferred.resolve()
        end, duration = now_iso(), self.elapsed()
        apply_finish(self._log, end, duration, tl, vl, notes)
        assert self._journal is not None
        self._journal.append(records_out.finish_record(end, duration, tl, vl, notes))
        try:
            self._journal.flush(sync=True)
        except OSError:
            pass  # logged by the writer; the document below holds everything if it saves
        self._finished = True
        self._accepting = False
        self._dirty = True
        deadline = time.monotonic() + sink_timeout
        self._close_sinks(sink_timeout)
        self._wait_for_mirrors(max(0.0, deadline - time.monotonic()))
        self.save()
        return self._log

    def _wait_for_mirrors(self, timeout: float) -> None:
        """Give the mirror processes until ``timeout`` to forward everything and end."""
        deadline = time.monotonic() + timeout
        for mirror in self._mirrors:
            ended = mirror.wait(max(0.0, deadline - time.monotonic()))
            state = mirror.state()
            if not ended:
                mirror.give_up(
                    f"still sending after {timeout:g} s; it goes on in the background and "
                    "records its final state in the run when it is done"
                )
                logger.warning(
                    "the %s mirror did not finish within %g s; it goes on in the background",
                    mirror.name,
                    timeout,
                )
                state = mirror.state()
            self._log.mirrors[mirror.name] = state

    def _close_sinks(self, timeout: float) -> None:
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is None:
            return
        if self._finished:
            dispatcher.put("finish", self._log)
        stopped = dispatcher.close(timeout)
        failures = dispatcher.failures()
        for sink in self._sinks:
            sink.on_state = None
            state = dict(sink.state())
            if sink.name in failures:
                state["status"] = "failed"
                state["error"] = failures[sink.name]
            elif not stopped:
                state["status"] = "incomplete"
                state["error"] = (
                    f"did not finish within {timeout} s ({dispatcher.backlog} events not sent)"
                )
            elif dispatcher.dropped:
                state["status"] = "incomplete"
                state["dropped_events"] = dispatcher.dropped
            self._record_mirror(sink.name, state)
        self._dirty = True

    def save(self, path: str | Path | None = None, *, wait: bool = False) -> Path | None:
        """Write the JSON document atomically; returns its path.

        During the run the document is written by a background thread: ``save()`` takes a
        snapshot (milliseconds, however long the run), starts a fresh journal and returns.
        Until the write is done, loading the run reads the previous document and the
        journals, so nothing is missing; ``wait=True`` returns once the document is on disk
        (and raises ``OSError`` if it could not be written); without it a failed write is
        logged and shown by ``health()``, never raised (the journals keep every record, the
        next save tries again). After ``finish()`` the save is synchronous (and raises) and
        the journal is removed, the document being complete. With ``path`` it writes a copy
        there (synchronously) and leaves the run's files alone.
        """
        if not self.enabled:
            return None
        if self._closed and path is None:
            raise RunClosedError(
                f"save(): this tracker was closed; its journal holds the run. To save it, "
                f"create ExperimentTracker(config, resume={str(self._path)!r}) and save that one"
            )
        if not self._started:
            self.start()
        self._deferred.resolve()
        if path is not None:
            target = Path(path)
            if target.is_dir():
                raise ValueError(f"save(path={str(path)!r}): a folder; expected a file path")
            target.parent.mkdir(parents=True, exist_ok=True)
            write_document(target, self._log, self._save_id)
            return target
        assert self._path is not None
        failed = self._saver is not None and self._saver.error is not None
        if not self._dirty and not failed and (self._finished or not self._mirrors):
            if wait:
                self._wait_saved()
            return self._path  # (while mirrors run, a save also records their progress)
        self._refresh_mirrors()
        if self._finished:
            self._final_save()
            return self._path
        save_id = self._save_id + 1
        snapshot = Snapshot(
            save_id,
            document_meta(self._log, save_id),
            self._log.metrics_history.snapshot(),
            self._log.superseded_history.snapshot(),
        )
        journal = self._journal
        assert journal is not None and self._saver is not None
        segment = self._mirror_segment()
        try:
            journal.rotate(
                self._header(save_id), keep=[kept_path(journal.path, self._journal_base), *segment]
            )
        except OSError as exc:
            # The old journal cannot be kept: write the document here and now instead.
            logger.warning("save(): keeping the journal failed (%s); saving in the foreground", exc)
            self._saver.wait()  # an older snapshot must not land after this one
            try:
                metrics, superseded = snapshot.metrics.chunks(), snapshot.superseded.chunks()
                write_snapshot(self._path, snapshot.meta, metrics, superseded)
            except (OSError, ValueError) as write_exc:
                # Disk full, say: nothing is lost (the journal thread keeps the records in
                # memory and retries), and the training loop is not the place to raise.
                self._saver.failed(write_exc)
                if wait:
                    raise
                return self._path
            self._saver.wrote(save_id)
            self._rotate_after_foreground_save(journal, save_id, segment)
        else:
            self._saver.submit(snapshot)
        self._save_id = save_id
        self._journal_base = save_id
        self._dirty = False
        if wait:
            self._wait_saved()
        return self._path

    def _mirror_segment(self) -> list[Path]:
        """Where the journal goes for a live mirror when rotated (none without one)."""
        journal = self._journal
        if journal is None or not any(m.alive for m in self._mirrors):
            return []
        return [segment_path(journal.path, self._journal_base)]

    def _rotate_after_foreground_save(
        self, journal: JournalWriter, save_id: int, segment: list[Path]
    ) -> None:
        try:
            journal.rotate(self._header(save_id), keep=segment)
        except OSError as exc:
            logger.error(
                "journal %s: could not keep the rotated journal for the mirror (%s); the "
                "mirror will miss rows and be marked incomplete",
                journal.path,
                exc,
            )
            journal.rotate(self._header(save_id))

    def _wait_saved(self) -> None:
        saver = self._saver
        if saver is None:
            return
        saver.wait()
        if saver.error is not None:
            cause = saver.exception
            message = f"save(): the document could not be written: {saver.error}"
            errno = getattr(cause, "errno", None)
            raise (OSError(message) if errno is None else OSError(errno, message)) from cause

    def _remove_kept(self, below: int | None = None) -> None:
        """Remove the kept journals whose records the document on disk holds."""
        assert self._path is not None
        for base, kept in kept_journals(self._path.with_suffix(JOURNAL_SUFFIX)):
            if below is None or base < below:
                with contextlib.suppress(OSError):
                    kept.unlink()

    def _final_save(self) -> None:
        """The save after ``finish()``: synchronous; the journals go, the document is all."""
        assert self._path is not None
        if self._saver is not None:
            self._saver.close()
        write_document(self._path, self._log, self._save_id + 1)
        self._save_id += 1
        self._dirty = False
        journal = self._journal
        if journal is not None:
            segment = self._mirror_segment()
            journal.close(delete=True, keep_as=segment[0] if segment else None)
            self._journal = None
        self._remove_kept()
        remove_stale_temps(self._path)
        self._remove_mirror_files()
        self._release()

    def _remove_mirror_files(self) -> None:
        """After the final save: the files of mirrors that ended (the document has their
        state); a mirror still running removes its own as it finishes."""
        assert self._path is not None
        if any(m.alive for m in self._mirrors):
            return
        stem = self._path.stem
        leftovers = list(self._path.parent.glob(f".{stem}.seg-*{JOURNAL_SUFFIX}"))
        for mirror in self._mirrors:
            state_file = mirror_state_path(self._path, mirror.name)
            leftovers += [state_file, state_file.with_name(state_file.name + ".lock")]
            leftovers.append(snapshot_path(self._path, mirror.name))
            if mirror.state().get("status") == "finished":
                leftovers.append(log_path(self._path, mirror.name))
        for leftover in leftovers:
            with contextlib.suppress(OSError):
                leftover.unlink()

    def flush(self) -> None:
        """Journal on disk (fsynced) and every sink's queue drained and flushed.

        Raises ``OSError`` if the journal cannot be written (the records stay queued).
        """
        if not self.enabled or not self._started:
            return
        self._deferred.resolve()
        if self._journal is not None:
            self._journal.flush(sync=True)
        if self._dispatcher is not None:
            self._dispatcher.flush()

    def close(self) -> None:
        """Stop without finishing: the journal is kept, so the run can be resumed.

        Everything logged is written before this returns (also when called at interpreter
        exit for a tracker left open).
        """
        if self._closed or not self.enabled:
            return
        self._closed = True
        self._accepting = False
        _live.discard(self)
        if not self._started:
            return
        try:
            self._deferred.resolve()
        except Exception as exc:
            logger.error("close(): reading logged device tensors failed: %s", exc)
        self._close_sinks(timeout=10.0)
        if self._saver is not None and not self._saver.close(timeout=60.0):
            # The run stays locked until it is done: a tracker resuming the run meanwhile
            # could have an older document land over its newer one.
            logger.warning(
                "close(): the background save of %s is still running after 60 s; waiting "
                "for it (the journals keep everything it would hold)",
                self._path,
            )
            self._saver.close()
        if self._journal is not None:
            self._journal.append(records_out.closed_record())  # not a live run any more
            self._journal.close()
            self._journal = None
        self._wait_for_mirrors(10.0)  # they read the closed record and end
        self._release()

    def _release(self) -> None:
        _live.discard(self)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def print_summary(self) -> None:
        """Print the run's summary block."""
        print(format_summary(self.log))

    def __enter__(self) -> ExperimentTracker:
        return self.start()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None and self._started and not self._finished:
            self.finish()
        self.close()
