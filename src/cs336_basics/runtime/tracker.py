"""``ExperimentTracker``: what the training loop calls (the guide's API, and the wiring).

On the training thread each ``log_metrics`` call validates its values, builds one
``MetricsSnapshot``, applies it to the in-memory ``ExperimentLog`` and queues it for the
journal writer thread and, if any, the sink dispatcher thread. Nothing on this path touches
the disk or the network. Saving is :class:`~.saver.RunSaves`'s work, mirror processes are
:class:`~.mirrors.Mirrors`'s.

Signals: a handler that calls ``save()``, ``finish()``, ``flush()`` or ``close()`` while the
training thread is inside one of them (a SIGTERM handler of a preempted job) never
deadlocks: the inner call is done as soon as the outer one ends (also when the handler
raises ``SystemExit``), and everything logged is in the journal by then.
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
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core import env
from ..core.alerts import Alert, AlertRules
from ..core.config import ExperimentConfig
from ..core.errors import LogFormatError, RunClosedError, UsageError
from ..core.flops import dtype_key, peak_flops
from ..core.log import (
    ExperimentLog,
    apply_eval,
    apply_finish,
    apply_metrics,
    apply_system,
    apply_update,
    superseded_step,
)
from ..core.row import ROW_FIELDS, VALUE_FIELDS, MetricsSnapshot
from ..core.text import format_summary
from ..core.values import (
    MAX_INDEX,
    check_group,
    check_tag,
    check_text,
    optional_float,
    to_float,
    to_int,
    wrap_float,
)
from ..store import journal as records
from ..store.codec import dumps
from ..store.document import now_iso, recover, write_document
from ..store.fileio import atomic_write
from ..store.layout import RunFiles, claim_stem
from ..store.load import load_run
from ..store.lock import RunLock
from .alerts import PRIME_ROWS, AlertWatch
from .deferred import DeferredRows, has_device_values
from .mirrors import Mirrors, remove_orphan_segments
from .provenance import collect as collect_provenance
from .provenance import resume_entry
from .saver import RunSaves
from .sinks import DEFAULT_QUEUE_SIZE, Sink, SinkDispatcher, make_sink
from .system_metrics import DEFAULT_INTERVAL, RankSamplesFile, Sample, SystemSampler

logger = logging.getLogger("cs336_basics")
#: A row holding accelerator tensors is converted (off the training thread) once it has
#: waited this long, so it reaches the journal within about a second; eval, save and finish
#: convert at once.
DEFERRED_MAX_AGE = 0.5
#: Seconds ``finish()``/``close()`` wait for the provenance thread (git, nvidia-smi).
PROVENANCE_WAIT_S = 30.0
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


def check_metric_names(where: str, names: Iterable[Any], known: set[str]) -> None:
    """Refuse metric names a document cannot hold or that clash with the guide's row fields;
    names seen before (``known``) are not checked again."""
    for name in names:
        if name in known:
            continue
        check_text(f"{where}: metric name", name)
        if name == "":
            raise ValueError(f"{where}: an extra metric needs a name, got ''")
        if name in _RESERVED_METRICS:
            raise ValueError(
                f"{where}: {name!r} is one of the guide's row fields, not an extra metric "
                f"(reserved: {', '.join(ROW_FIELDS)}); pick another name"
            )
        known.add(name)


def _check_config_text(where: str, value: Any) -> None:
    """Refuse text a document cannot hold anywhere in a config value (``ValueError``
    naming where: ``config.layers[1]``, ``config.nested.k key``)."""
    if isinstance(value, str):
        check_text(where, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                check_text(f"{where} key", key)
            _check_config_text(f"{where}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_config_text(f"{where}[{index}]", item)


def _optional_positive(name: str, value: Any) -> float | None:
    """A positive finite number (FLOPs, FLOP/s), or None; ``ValueError`` naming it."""
    if value is None:
        return None
    number = to_float(name, value)
    if not (isinstance(number, float) and 0 < number < float("inf")):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(number)


def _system_interval(value: Any) -> tuple[float, bool]:
    """Seconds between system samples (0: off) and whether sampling was asked for: the
    argument, else ``CS336_SYSTEM_INTERVAL``, else :data:`DEFAULT_INTERVAL`."""
    if value is None:
        from_env = env.system_interval()
        return (DEFAULT_INTERVAL, False) if from_env is None else (from_env, from_env > 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"system_interval: expected seconds >= 0 (0: off), got {value!r}")
    if value == float("inf"):
        raise ValueError("system_interval: expected a finite number of seconds (0: off)")
    return float(value), value > 0


def compute_info(
    flops_per_token: Any,
    peak: Any,
    device_name: str | None,
    dtype: Any,
    num_devices: int,
) -> dict[str, Any]:
    """What ``ExperimentLog.compute`` records from the tracker's arguments (see there);
    empty when none was given. A device or dtype the peak table lacks leaves the peak out
    (MFU absent: never guessed) and says so once on the logger."""
    info: dict[str, Any] = {}
    per_token = _optional_positive("flops_per_token", flops_per_token)
    if per_token is not None:
        info["flops_per_token"] = per_token
    given = _optional_positive("peak_flops", peak)
    if type(num_devices) is not int or num_devices < 1:
        raise ValueError(f"num_devices: expected a positive integer, got {num_devices!r}")
    if device_name is not None or dtype is not None:
        if device_name is None or dtype is None:
            raise ValueError(
                "device_name= and dtype= go together (the peak FLOP/s table needs both); "
                "or pass peak_flops="
            )
        check_text("device_name", device_name)
        info.update(device_name=device_name, dtype=str(dtype), num_devices=num_devices)
        if given is None:
            found = peak_flops(device_name, dtype, num_devices)
            if found is None:
                what = "dtype" if dtype_key(dtype) is None else "device"
                logger.info(
                    "MFU: no peak FLOP/s for %s %r in the table (core.flops.PEAK_FLOPS); MFU "
                    "is not computed. Pass peak_flops= to give it.",
                    what,
                    dtype if what == "dtype" else device_name,
                )
            else:
                info["peak_flops"] = found
    if given is not None:
        info["peak_flops"] = given
    return info


def _check_data_files(data_files: Any) -> dict[str, str | Path]:
    """``data_files``: a mapping of names to paths (their fingerprints are recorded)."""
    if data_files is None:
        return {}
    if not isinstance(data_files, Mapping):
        raise TypeError(
            "data_files: expected a dict of names to paths ({'train': 'data/train.bin'}), "
            f"got {type(data_files).__name__}"
        )
    out: dict[str, str | Path] = {}
    for name, path in data_files.items():
        check_text("data_files name", name)
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"data_files[{name!r}]: expected a path, got {type(path).__name__} {path!r:.60}"
            )
        out[name] = Path(path)
    return out


def _check_config(config: ExperimentConfig) -> None:
    """Refuse, at creation, a config the JSON document could not hold (names the key)."""
    for key, value in config.to_dict().items():
        check_text("config key", key)
        _check_config_text(f"config.{key}", value)
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
        system_interval: seconds between two samples of the system metrics (GPUs through
            NVML, this process's CPU and memory, the host's memory; see
            ``runtime.system_metrics``), taken by a thread of their own and kept in
            ``log.system_history``; 0 turns sampling off. ``None`` reads
            ``CS336_SYSTEM_INTERVAL``, else samples every 10 s.
        alert_rules: what the alert detector watches and its thresholds
            (``core.alerts.AlertRules``; ``None``: the defaults; ``False``: no detection).
            NaN/inf losses, loss spikes and gradient-norm explosions are judged on the
            journal thread as rows are written, recorded in ``log.alerts`` and logged.
        on_alert: called with each ``Alert`` on a thread of its own (never the training
            thread); what it raises is logged, never raised.
        flops_per_token: the model's training FLOPs per token (``core.flops``): gives the
            ``flops`` x-axis and, with a peak, each row's MFU (derived when read).
        peak_flops: peak FLOP/s of all the devices ``tokens_per_sec`` counts; or
        device_name, dtype: look it up (``torch.cuda.get_device_name()``, ``"bf16"``...)
            in ``core.flops.PEAK_FLOPS``, times ``num_devices``. A device not in the table
            leaves MFU absent (never guessed).
        tags: labels for finding the run (``cs336-exp list --tag``): 1-64 characters each,
            no blank or comma. Kept in the document, sent to W&B; editable later
            (``cs336-exp tag``).
        group: the group the run belongs to (the seeds of one setting, a sweep): drawn as
            one mean curve with a band by the page, ``plot --by-group`` and the report.
        data_files: the files the run reads, by name (``{"train": path, "val": path}``):
            their size and a fingerprint go into the run's provenance.
        provenance: record where the run came from at start (git commit, branch, dirty
            tree and its diff, command line, versions, host, GPUs, data fingerprints; see
            ``runtime.provenance``), in a thread of its own. ``None``: yes, unless
            ``CS336_PROVENANCE=0``.
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
        system_interval: float | None = None,
        alert_rules: AlertRules | bool | None = None,
        on_alert: Callable[[Alert], Any] | None = None,
        flops_per_token: float | None = None,
        peak_flops: float | None = None,
        device_name: str | None = None,
        dtype: str | None = None,
        num_devices: int = 1,
        tags: Iterable[str] | None = None,
        group: str | None = None,
        data_files: Mapping[str, str | Path] | None = None,
        provenance: bool | None = None,
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
        if alert_rules is True:
            alert_rules = None
        if alert_rules is not None and alert_rules is not False:
            if not isinstance(alert_rules, AlertRules):
                raise TypeError(
                    f"alert_rules: expected AlertRules, None or False, got {alert_rules!r:.60}"
                )
        if on_alert is not None and not callable(on_alert):
            raise TypeError(f"on_alert: expected a callable, got {on_alert!r:.60}")
        self._system_interval, self._system_explicit = _system_interval(system_interval)
        self._compute = compute_info(flops_per_token, peak_flops, device_name, dtype, num_devices)
        self._data_files = _check_data_files(data_files)
        if provenance is not None and not isinstance(provenance, bool):
            raise TypeError(f"provenance: expected True, False or None, got {provenance!r:.60}")
        self._provenance_on = provenance if provenance is not None else not env.provenance_off()
        self._provenance_thread: threading.Thread | None = None
        self._provenance_lock = threading.Lock()
        self.config = config
        self.log_dir = Path(log_dir)
        self.enabled = all_ranks or env.process_rank() == 0
        self.flush_interval = float(flush_interval)
        self._log = ExperimentLog(config=config, compute=dict(self._compute))
        self._resume = resume
        self._sinks = _sinks_from(sinks) if self.enabled else []
        self._sink_queue_size = sink_queue_size
        self._dispatcher: SinkDispatcher | None = None
        self._mirrors = Mirrors()
        self._saves: RunSaves | None = None
        self._files: RunFiles | None = None
        self._lock: RunLock | None = None
        self._steps_done = 0
        self._t0 = 0.0
        self._offset = 0.0
        self._dirty = True
        self._started = False
        self._finished = False
        self._closed = False
        self._accepting = False  # between start() and finish()/close(): rows are taken
        self._deferred = DeferredRows(self._emit, DEFERRED_MAX_AGE)
        self._last_read: MetricsSnapshot | None = None
        self._names: set[str] = set()  # extra metric names already checked
        self._busy: int | None = None  # the thread inside save/finish/flush/close
        #: The live journal's ``append`` (None before start and once the journal is closed):
        #: the one attribute the hot path reads.
        self._append: Callable[[Any], None] | None = None
        self._later: list[Callable[[], Any]] = []  # calls a signal handler made meanwhile
        self._watch: AlertWatch | None = None
        if alert_rules is not False and self.enabled:
            self._watch = AlertWatch(
                lambda: self._log, alert_rules or None, self._notify_alert, on_alert
            )
        self._sampler: SystemSampler | None = None
        self._next_sample = 0
        self._rank_samples: RankSamplesFile | None = None
        if tags is not None or group is not None:
            self.set_attributes(tags=tags, group=group)
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
        return self._files.document if self._files is not None else None

    @property
    def files(self) -> RunFiles | None:
        """Every file of the run (known once started)."""
        return self._files

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

    @property
    def alerts(self) -> list[Alert]:
        """The alerts recorded so far (NaN/inf losses, spikes, explosions: ``core.alerts``),
        oldest first. They are judged on the journal thread, within about a quarter of a
        second of ``log_metrics`` (a row holding device tensors: once they were read)."""
        return list(self._log.alerts)

    @property
    def system_interval(self) -> float:
        """Seconds between two system-metrics samples (0: sampling off)."""
        return self._system_interval

    def health(self) -> dict[str, Any]:
        """Whether everything logged is safely on its way, for a loop or a monitor to check.

        ``journal`` is ``"ok"``, ``"behind"`` (an I/O error: ``journal_error`` says which;
        ``journal_backlog`` records wait in memory and are retried), or ``"closed"``.
        ``waiting_device_rows``: rows whose tensors are not read yet; ``device_error``: the
        last values that could not be read (left out, rows kept). ``sink_backlog``:
        events the sinks have not handled yet; ``sinks``: each mirror's recorded state.
        ``alerts``: alerts recorded; ``system_samples``: system-metrics samples taken;
        ``system_note``: what the sampler could not read (no GPU, a missing extra), if any.
        """
        self._mirrors.refresh(self._log)
        saves = self._saves
        journal = saves.journal if saves is not None else None
        dispatcher = self._dispatcher
        save_error = saves.error if saves is not None else None
        busy = saves is not None and saves.saver.busy
        return {
            "save": "failed" if save_error else "writing" if busy else "ok",
            "save_error": save_error,
            "last_save_seconds": saves.saver.last_duration if saves is not None else None,
            "journal": "closed" if journal is None else "behind" if journal.error else "ok",
            "journal_error": journal.error if journal is not None else None,
            "journal_backlog": journal.backlog if journal is not None else 0,
            "waiting_device_rows": len(self._deferred),
            "device_error": self._deferred.last_dropped,
            "sink_backlog": dispatcher.backlog if dispatcher is not None else 0,
            "sinks_dropped": dispatcher.dropped if dispatcher is not None else 0,
            "sinks": {name: dict(state) for name, state in self._log.mirrors.items()},
            "mirror_processes": self._mirrors.alive(),
            "alerts": len(self._log.alerts),
            "system_samples": len(self._log.system_history),
            "system_note": self._sampler.note if self._sampler is not None else None,
        }

    # ------------------------------------------------------------------ signals
    @contextlib.contextmanager
    def _exclusive(self, call: Callable[[], Any]) -> Iterator[bool]:
        """Run a save/finish/flush/close body, or, if this thread is inside one already (a
        signal handler interrupted it), queue ``call`` for when that one ends and yield
        False. Queued calls run even while an exception (``SystemExit``) propagates."""
        me = threading.get_ident()
        if self._busy == me:
            self._later.append(call)
            journal = self._saves.journal if self._saves is not None else None
            if journal is not None:
                journal.wake()  # what was logged reaches the disk meanwhile
            yield False
            return
        outer = self._busy is None
        if outer:
            self._busy = me
        try:
            yield True
        finally:
            if outer:
                self._busy = None
                while self._later:
                    later = self._later.pop(0)
                    try:
                        later()
                    except Exception:  # (an exception may already be propagating)
                        logger.exception("a call deferred during a save failed")

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
            files = self._files = RunFiles(self.log_dir, stem)
            self._lock = RunLock.acquire(files)
            self._log.start_time = when.isoformat()
            self._log.run_id = stem
            self._log.source = str(files.document)
            self._saves = self._new_saves(files, 0)
            self._saves.open_journal(None)
        assert self._files is not None and self._saves is not None
        assert self._saves.journal is not None
        self._append = self._saves.journal.append
        self._start_provenance(resumed=self._resume is not None)
        self._t0 = time.perf_counter()
        self._started = True
        self._accepting = True
        in_process = []
        journal = self._saves.journal
        assert journal is not None
        for sink in self._sinks:
            self._record_mirror(sink.name, sink.bind(self._log))
            if sink.process_module:
                failed = self._mirrors.start(sink, self._files, journal.base)
                if failed is not None:
                    state = dict(self._log.mirrors.get(sink.name) or {})
                    self._record_mirror(sink.name, {**state, **failed})
            else:
                sink.on_state = lambda state, name=sink.name: self._record_mirror(name, state)
                in_process.append(sink)
        if in_process:
            self._dispatcher = SinkDispatcher(in_process, self._sink_queue_size)
            self._dispatcher.put("start", self._log)
        if self._system_interval > 0:
            history = self._log.system_history
            self._next_sample = 0 if history.last_iteration is None else history.last_iteration + 1
            self._sampler = SystemSampler(
                self._system_interval,
                self._on_system_sample,
                explicit=self._system_explicit,
                name=f"cs336-system-{self._files.stem}",
            ).start()
        return self

    # ------------------------------------------------------------------ provenance
    def _start_provenance(self, resumed: bool) -> None:
        """Record where the run came from in a thread (git and nvidia-smi may take a
        while): see ``runtime.provenance``. A resume adds an entry to ``resumes``."""
        if not self._provenance_on:
            return
        files = self._files
        assert files is not None

        def work() -> None:
            try:
                record, diff = collect_provenance(self._data_files)
                if diff is not None and not resumed:
                    try:
                        atomic_write(files.diff, diff)
                        record["git"]["diff_file"] = files.diff.name
                    except OSError as exc:
                        record["git"]["diff_error"] = f"{exc.strerror or exc}"
                self._provenance_ready(record, resumed)
            except Exception:  # never into the run: said once, the run goes on without
                logger.exception("recording the run's provenance failed")

        self._provenance_thread = threading.Thread(
            target=work, name="cs336-provenance", daemon=True
        )
        self._provenance_thread.start()

    def _provenance_ready(self, record: dict[str, Any], resumed: bool) -> None:
        with self._provenance_lock:
            if self._provenance_thread is None:  # the run ended without waiting for it
                return
            log = self._log
            if resumed and log.provenance:
                entry = resume_entry(record)
                record = {**log.provenance, "resumes": [*log.provenance.get("resumes", []), entry]}
            log.provenance = record
            self._dirty = True
            journal = self._saves.journal if self._saves is not None else None
            if journal is not None:
                journal.append(records.attributes_record(provenance=record))

    def _wait_provenance(self, timeout: float) -> None:
        """Let the provenance thread finish (before the last journal record or save)."""
        thread = self._provenance_thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            logger.warning(
                "the run's provenance was not recorded within %.0f s (git or nvidia-smi "
                "too slow?); the run is saved without it",
                timeout,
            )
        with self._provenance_lock:
            self._provenance_thread = None

    def _new_saves(self, files: RunFiles, save_id: int) -> RunSaves:
        observe = self._watch.observe if self._watch is not None else None
        return RunSaves(
            files, self._header, self.flush_interval, self._on_journal_tick, save_id, observe
        )

    def _on_system_sample(self, values: Sample) -> None:
        """On the sampler thread: one sample into the log, the journal and the sinks."""
        if not self._accepting:
            return
        numbers = {name: wrap_float(float(value)) for name, value in values.items()}
        row = MetricsSnapshot(self._next_sample, self._steps_done, self.elapsed(), extra=numbers)
        if not apply_system(self._log, row):
            return
        self._next_sample += 1
        saves = self._saves
        journal = saves.journal if saves is not None else None
        if journal is not None:
            journal.append(records.system_record(row))
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.put("emit_system", row)

    def _notify_alert(self, alert: Alert) -> None:
        """On the journal thread: an alert for the in-process sinks."""
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.put("emit_alert", alert)

    def _stop_sampling(self) -> None:
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.close()
        rank, self._rank_samples = self._rank_samples, None
        if rank is not None:
            rank.close()

    def sample_system_for(self, run: str | Path) -> None:
        """On a rank that does not write the run (rank > 0 under torch.distributed, whose
        tracker records nothing): sample this rank's system metrics every
        ``system_interval`` seconds into a file of rank 0's run, which loading the run reads
        into ``log.system_by_rank[rank]``. ``run``: rank 0's run id (``tracker.run_id``,
        broadcast to the other ranks) or the path of its document. The file is
        ``.<run>.system-rank<K>.jsonl`` beside it (see ``store.layout``); its clock counts
        from this call (about rank 0's, which counts from its start), and a job resumed
        later continues its samples. Stopped by ``finish()`` or ``close()``."""
        if self.enabled:
            raise UsageError(
                "sample_system_for(): this tracker writes its own run, where its system "
                "metrics go already; call it on the other ranks"
            )
        if self._system_interval <= 0 or self._rank_samples is not None:
            return
        text = check_text("run", str(run))
        if os.sep in text or text.endswith((".json", ".jsonl")):
            files = RunFiles.of(Path(text))
        else:
            files = RunFiles(self.log_dir, text)
        rank = env.process_rank()
        self._rank_samples = RankSamplesFile(
            files.rank_system(rank),
            records.samples_header(rank, os.getpid(), socket.gethostname(), files.stem),
        )
        self._sampler = SystemSampler(
            self._system_interval,
            self._on_rank_sample,
            explicit=True,
            name=f"cs336-system-rank{rank}",
        ).start()

    def _on_rank_sample(self, values: Sample) -> None:
        samples = self._rank_samples
        if samples is not None:
            samples.write(self._steps_done, values)

    def _on_journal_tick(self) -> None:
        """On the journal thread before each write: convert device values that waited too
        long, and report a mirror that went offline or failed."""
        self._deferred.resolve_old()
        self._mirrors.watch()

    def _record_mirror(self, name: str, state: dict[str, Any]) -> None:
        """Keep a sink's state in the log and the journal (safe from the dispatcher thread)."""
        if not state:
            return
        self._log.mirrors[name] = dict(state)
        saves = self._saves
        journal = saves.journal if saves is not None else None
        if journal is not None:
            journal.append(records.mirror_record(name, state))

    def _header(self, base: int | None) -> bytes:
        return records.encode_header(self._log, base, os.getpid(), socket.gethostname())

    def _continue(self, resume: str | Path | ExperimentLog) -> None:
        if isinstance(resume, ExperimentLog):
            if not resume.source:
                raise ValueError(
                    "resume: this ExperimentLog has no file (source is None); pass the path "
                    "of its .json or .jsonl instead"
                )
            resume = resume.source
        files = RunFiles.of(resume)
        if not files.document.exists() and not files.journal.exists():
            raise FileNotFoundError(f"resume: no experiment log at {resume}")
        self._files = files
        self.log_dir = files.folder
        self._lock = RunLock.acquire(files)
        try:
            recover(files)  # a save cut short in the middle of appending
            try:
                loaded = load_run(files.document)
            except LogFormatError as exc:
                raise LogFormatError(f"resume: {exc}") from exc
            self._adopt(loaded.log)
            remove_orphan_segments(files)
            self._saves = self._new_saves(files, loaded.save_id)
            self._saves.resume(self._log, loaded.save_id)
            self._dirty = False
        except BaseException:
            self._lock.release()
            self._lock = None
            raise

    def _adopt(self, log: ExperimentLog) -> None:
        """Continue the loaded run with this tracker's config (a change is recorded)."""
        assert self._files is not None
        changed = log.config.differences(self.config)
        if log.config.experiment_name != self.config.experiment_name:
            changed["experiment_name"] = (
                log.config.experiment_name,
                self.config.experiment_name,
            )
        if changed:
            log.config_changes.append(
                {
                    "time": now_iso(),
                    "after_iteration": log.last_iteration,
                    "previous": {k: old for k, (old, _) in changed.items()},
                    "new": {k: new for k, (_, new) in changed.items()},
                }
            )
            logger.warning(
                "resuming %s with a different config (%s); the previous values are kept in "
                "the run's config_changes",
                self._files.stem,
                ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items()),
            )
        log.config = self.config
        log.status = "running"
        log.end_time = None
        log.source = str(self._files.document)
        before = self._log  # what was set on this tracker before it started goes on
        if before.notes:
            log.notes = before.notes
        if before.tags:
            log.tags = list(before.tags)
        log.group = before.group or log.group
        log.job_type = before.job_type or log.job_type
        log.summary.update(before.summary)
        if self._compute:  # given again: the new values (a resume on another machine)
            log.compute = dict(self._compute)
        self._log = log
        if self._watch is not None:
            self._watch.prime(log.metrics_history[-PRIME_ROWS:])
        history = log.metrics_history
        if history:
            self._steps_done = history[-1].gradient_step
            self._offset = history[-1].wallclock_time
        if log.duration_seconds is not None:
            self._offset = max(self._offset, log.duration_seconds)
        samples = log.system_history
        if samples:  # the clock goes on from the last thing recorded
            self._offset = max(self._offset, samples[-1].wallclock_time)

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
        if extra and not self._names.issuperset(extra):  # new names: checked once
            check_metric_names("log_metrics", extra, self._names)
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
        append = self._append
        if append is not None:
            append(row)
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
            check_metric_names("log_eval", extra, self._names)
        extras = {k: to_float(k, v) for k, v in extra.items()} or None
        self._deferred.resolve()
        step = max(self._steps_done, 1)
        now = self.elapsed()
        row = apply_eval(self._log, it, step, now, vl, tl, extras)
        self._dirty = True
        journal = self._journal()
        journal.append(records.eval_record(it, step, now, vl, tl, extras))
        journal.wake()
        if self._dispatcher is not None:
            self._dispatcher.put("emit_eval", row)
        return row

    def update_row(
        self, iteration: int, *, gradient_step: int | None = None, **values: Any
    ) -> MetricsSnapshot | None:
        """Add values to the row of ``iteration`` (row fields such as ``learning_rate`` and
        extra metrics by name; a value replaces the row's), or add that row in order.

        For code that logs one iteration in several calls (the W&B drop-in): unlike a
        second ``log_metrics`` at the same iteration, this is not a restart from a
        checkpoint and supersedes nothing.
        """
        if not self.enabled:
            return None
        if not self._accepting:
            self._open_for_logging("update_row")
        it = to_int("iteration", iteration)
        numbers: dict[str, Any] = {}
        extra = {k: v for k, v in values.items() if k not in VALUE_FIELDS}
        if extra:
            check_metric_names("update_row", extra, self._names)
        for name, value in values.items():
            numbers[name] = to_float(name, value)
        self._deferred.resolve()
        step = (
            to_int("gradient_step", gradient_step)
            if gradient_step is not None
            else max(self._steps_done, 1)
        )
        now = self.elapsed()
        row = apply_update(self._log, it, step, now, numbers)
        self._dirty = True
        self._journal().append(records.update_record(it, step, now, numbers))
        if self._dispatcher is not None:
            self._dispatcher.put("emit_update", (row, numbers))
        return row

    def _journal(self) -> Any:
        saves = self._saves
        assert saves is not None and saves.journal is not None
        return saves.journal

    def _open_for_logging(self, what: str) -> None:
        if self._finished:
            raise RunClosedError(
                f"{what}(): run {self.run_id} is already finished; to continue it, create "
                f"ExperimentTracker(config, resume={str(self.path)!r})"
            )
        if self._closed:
            raise RunClosedError(
                f"{what}(): this tracker was closed; to continue the run, create "
                f"ExperimentTracker(config, resume={str(self.path)!r})"
            )
        self.start()

    def set_notes(self, notes: str) -> None:
        """Replace the run's notes (also done by ``finish(notes=...)``)."""
        check_text("notes", notes)
        self._log.notes = notes
        self._dirty = True
        saves = self._saves
        if saves is not None and saves.journal is not None:
            saves.journal.append(records.notes_record(notes))

    def set_attributes(
        self,
        *,
        tags: Iterable[str] | None = None,
        group: str | None = None,
        job_type: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Set the run's tags, group or job type (what is given), and add values to its
        other summary values (numbers, strings, booleans or None); kept in the document."""
        record: dict[str, Any] = {}
        if tags is not None:
            if isinstance(tags, str):
                raise TypeError(f"tags: expected a list of strings, got the string {tags!r:.60}")
            record["tags"] = list(dict.fromkeys(check_tag(t, "tags") for t in tags))
        if group is not None:
            record["group"] = check_group(group)
        if job_type is not None:
            record["job_type"] = check_text("job_type", job_type)
        if summary:
            for key, value in summary.items():
                check_text("summary key", key)
                if isinstance(value, str):
                    check_text(f"summary.{key}", value)
                elif value is not None and not isinstance(value, bool):
                    summary = {**summary, key: to_float(f"summary.{key}", value)}
            record["summary"] = dict(summary)
        if not record:
            return
        records.apply_attributes(self._log, record)
        self._dirty = True
        saves = self._saves
        if saves is not None and saves.journal is not None:
            saves.journal.append(records.attributes_record(**record))

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
            self._stop_sampling()  # (another rank's samples: see sample_system_for)
            return self._log
        if notes is not None:
            check_text("notes", notes)
        if (
            isinstance(sink_timeout, bool)
            or not isinstance(sink_timeout, (int, float))
            or not (sink_timeout >= 0)
        ):
            raise ValueError(f"sink_timeout: expected seconds >= 0, got {sink_timeout!r}")
        tl = optional_float("train_loss", train_loss)
        vl = optional_float("val_loss", val_loss)
        with self._exclusive(lambda: self.finish(tl, vl, notes, sink_timeout=sink_timeout)) as now:
            if now:
                self._finish(tl, vl, notes, sink_timeout)
        return self._log

    def _finish(self, tl: Any, vl: Any, notes: str | None, sink_timeout: float) -> None:
        if self._finished:
            if self._dirty:  # the final save failed before: try it again
                self._save(None, False)
            return
        if self._closed:
            raise RunClosedError(
                f"finish(): this tracker was closed; to finish the run, create "
                f"ExperimentTracker(config, resume={str(self.path)!r}) and finish that one"
            )
        if not self._started:
            self.start()
        self._stop_sampling()
        self._deferred.resolve()
        end, duration = now_iso(), self.elapsed()
        self._wait_provenance(PROVENANCE_WAIT_S)
        apply_finish(self._log, end, duration, tl, vl, notes)
        journal = self._journal()
        journal.append(records.finish_record(end, duration, tl, vl, notes))
        try:
            journal.flush(sync=True)
        except OSError:
            pass  # logged by the writer; the document below holds everything if it saves
        self._finished = True
        self._accepting = False
        self._dirty = True
        deadline = time.monotonic() + sink_timeout
        self._close_sinks(sink_timeout)
        self._mirrors.wait(self._log, max(0.0, deadline - time.monotonic()))
        self._save(None, False)
        if self._watch is not None:
            self._watch.close()

    def _close_sinks(self, timeout: float) -> None:
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is None:
            return
        if self._finished:
            dispatcher.put("finish", self._log)
        stopped = dispatcher.close(timeout)
        failures = dispatcher.failures()
        for sink in self._sinks:
            if sink.process_module:
                continue
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
                f"create ExperimentTracker(config, resume={str(self.path)!r}) and save that one"
            )
        if path is not None:
            target = Path(path)
            if target.is_dir():
                raise ValueError(f"save(path={str(path)!r}): a folder; expected a file path")
        with self._exclusive(lambda: self.save(path, wait=wait)) as now:
            if now:
                return self._save(path, wait)
        return self.path

    def _save(self, path: str | Path | None, wait: bool) -> Path | None:
        if not self._started:
            self.start()
        self._deferred.resolve()
        saves = self._saves
        assert saves is not None and self._files is not None
        if path is not None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_document(target, self._log, saves.save_id)
            return target
        failed = saves.error is not None
        if not self._dirty and not failed and (self._finished or not self._mirrors.processes):
            if wait:
                saves.wait_saved()
            return self.path  # (while mirrors run, a save also records their progress)
        self._mirrors.refresh(self._log)
        if self._finished:
            self._append = None
            saves.final_save(self._log, segment=self._mirrors.any_alive)
            self._dirty = False
            self._mirrors.remove_files(self._files)
            self._release()
            return self.path
        saves.save(self._log, segment=self._mirrors.any_alive, wait=False)
        self._dirty = False
        if wait:
            saves.wait_saved()
        return self.path

    def flush(self) -> None:
        """Journal on disk (fsynced) and every sink's queue drained and flushed.

        Raises ``OSError`` if the journal cannot be written (the records stay queued).
        """
        if not self.enabled or not self._started:
            return
        with self._exclusive(self.flush) as now:
            if not now:
                return
            self._deferred.resolve()
            saves = self._saves
            if saves is not None and saves.journal is not None:
                saves.journal.flush(sync=True)
            if self._dispatcher is not None:
                self._dispatcher.flush()

    def close(self) -> None:
        """Stop without finishing: the journal is kept, so the run can be resumed.

        Everything logged is written before this returns (also when called at interpreter
        exit for a tracker left open).
        """
        if not self.enabled:
            self._stop_sampling()  # (another rank's samples: see sample_system_for)
            return
        if self._closed:
            return
        with self._exclusive(self.close) as now:
            if now:
                self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._accepting = False
        _live.discard(self)
        if not self._started:
            return
        self._stop_sampling()
        try:
            self._deferred.resolve()
        except Exception as exc:
            logger.error("close(): reading logged device tensors failed: %s", exc)
        saves = self._saves
        if saves is not None and saves.journal is not None:
            with contextlib.suppress(OSError):  # (logged by the writer; retried below)
                saves.journal.flush()  # rows judged now: their alerts reach the sinks
        self._wait_provenance(PROVENANCE_WAIT_S)
        self._close_sinks(timeout=10.0)
        saves = self._saves
        if saves is not None:
            saves.close(timeout=60.0)
            self._append = None
            journal, saves.journal = saves.journal, None
            if journal is not None:
                journal.append(records.closed_record())  # not a live run any more
                journal.close()
        self._mirrors.wait(self._log, 10.0)  # they read the closed record and end
        if self._watch is not None:
            self._watch.close()
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
