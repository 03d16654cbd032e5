"""Files on disk: names, atomic saves, the journal writer thread, loading and recovery.

A run named ``NAME`` started at ``TS`` owns two files in ``log_dir`` with one stem,
``experiment_<safe NAME>_<TS>[_<n>]``:

- ``<stem>.json``: the guide's document, replaced atomically by every ``save()``;
- ``<stem>.jsonl``: the journal, the records logged since that document was written.
  Its header names the ``save_id`` of the document it continues (``base``); a journal
  whose base is not the document's is stale (the document already holds its records).

Loading a run reads the document, then replays a matching journal on top; a run that died
before its first save is rebuilt from the journal alone. A torn last line is skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import warnings
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from .codec import decode_log, dumps, encode_log, journal_row, rows_from_dicts, unmark
from .errors import LogFormatError
from .records import (
    ExperimentConfig,
    ExperimentLog,
    MetricsSnapshot,
    apply_eval,
    apply_finish,
    apply_metrics,
)
from .values import from_marker

JOURNAL_SUFFIX = ".jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
MAX_NAME_CHARS = 80


def safe_name(name: str) -> str:
    """A file-name-safe rendering of an experiment name (never a path, never empty)."""
    text = _DOTS.sub("_", _UNSAFE.sub("_", name)).strip("._-")[:MAX_NAME_CHARS].strip("._-")
    return text or "run"


def claim_stem(log_dir: Path, name: str, when: datetime) -> str:
    """Reserve a unique file stem by creating its journal exclusively."""
    base = f"experiment_{safe_name(name)}_{when:%Y%m%d_%H%M%S}"
    for n in range(1, 10_000):
        stem = base if n == 1 else f"{base}_{n}"
        if (log_dir / f"{stem}.json").exists():
            continue
        try:
            fd = os.open(log_dir / f"{stem}{JOURNAL_SUFFIX}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.close(fd)
        return stem
    raise RuntimeError(f"could not find a free file name for {name!r} in {log_dir}")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


class JournalWriter:
    """Appends journal lines from a background thread.

    The training thread calls :meth:`append` (a deque append, no I/O); the thread encodes and
    writes what is pending every ``interval`` seconds or when woken, and flushes the file to
    the OS each time. :meth:`flush` writes everything pending before it returns.
    """

    def __init__(self, path: Path, header: bytes, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self._pending: deque[Any] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._error: BaseException | None = None
        self._handle = self._open_fresh(header)
        self._thread = threading.Thread(
            target=self._run, name=f"cs336-journal-{path.stem}", daemon=True
        )
        self._thread.start()

    def _open_fresh(self, header: bytes) -> Any:
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as handle:
            handle.write(header)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        return open(self.path, "ab")

    def append(self, record: Any) -> None:
        """Queue a record: a ``MetricsSnapshot`` or a dict (encoded on the writer thread)."""
        self._pending.append(record)

    def wake(self) -> None:
        self._wake.set()

    def _write_pending(self, sync: bool = False) -> None:
        with self._lock:
            if self._handle is None:
                return
            chunks = []
            pending = self._pending
            while pending:
                record = pending.popleft()
                if type(record) is MetricsSnapshot:
                    chunks.append(journal_row(record))
                else:
                    chunks.append(dumps(record) + b"\n")
            if chunks:
                self._handle.write(b"".join(chunks))
                self._handle.flush()
            if sync:
                os.fsync(self._handle.fileno())

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._write_pending()
            except BaseException as exc:  # disk full, permissions: report on the next flush
                self._error = exc
                warnings.warn(
                    f"cs336_basics: could not write the journal {self.path}: {exc}; "
                    "the run stays in memory and save() will still try to write it",
                    RuntimeWarning,
                    stacklevel=1,
                )
                return

    def flush(self, sync: bool = False) -> None:
        """Write everything pending now (on the caller's thread); ``sync`` also fsyncs."""
        self._write_pending(sync=sync)

    def rotate(self, header: bytes) -> None:
        """Start a fresh journal after a save: pending records are in the saved document."""
        with self._lock:
            self._pending.clear()
            if self._handle is not None:
                self._handle.close()
            self._handle = self._open_fresh(header)

    def close(self, delete: bool = False) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)
        with self._lock:
            if self._handle is not None:
                if not delete:
                    self._handle.flush()
                    os.fsync(self._handle.fileno())
                self._handle.close()
                self._handle = None
        if delete:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


# ---------------------------------------------------------------------------------------
# Reading.


def _pid_alive(pid: Any, host: Any) -> bool:
    """Whether the process that wrote a journal header still runs (same host only)."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _row(data: dict[str, Any], where: str) -> MetricsSnapshot:
    return rows_from_dicts([data], where, fix_markers=True)[0]


def replay_journal(
    path: Path, log: ExperimentLog | None, base_save_id: int | None
) -> tuple[ExperimentLog | None, list[str]]:
    """Apply a journal's records to ``log`` (or build a log from its header).

    Returns the log (``None`` when the journal is stale for ``base_save_id`` or empty) and a
    list of problems met (torn or unreadable lines), which never stop the replay.
    """
    problems: list[str] = []
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return log, problems
    header: dict[str, Any] | None = None
    alive = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            last = all(not rest.strip() for rest in lines[number:])
            problems.append(
                f"{path}: line {number} is {'torn (skipped)' if last else 'unreadable (skipped)'}"
            )
            continue
        kind = record.get("k") if isinstance(record, dict) else None
        if header is None:
            if kind != "h":
                raise LogFormatError(f"{path}: not a journal (first record is not a header)")
            header = record
            alive = _pid_alive(record.get("pid"), record.get("host"))
            if log is not None and record.get("base") != base_save_id:
                # Stale: the document already holds these records.
                if log.status != "finished":
                    log.status = "running" if alive else "unfinished"
                return log, problems
            if log is None:
                log = ExperimentLog(
                    config=ExperimentConfig.from_dict(unmark(record.get("config") or {})),
                    start_time=record.get("start_time"),
                    notes=record.get("notes") or "",
                    run_id=str(record.get("run_id") or path.stem),
                    source=str(path),
                )
            continue
        assert log is not None
        where = f"{path}: line {number}"
        try:
            if kind == "m":
                apply_metrics(log, _row(record["r"], where))
            elif kind == "e":
                apply_eval(
                    log,
                    int(record["i"]),
                    int(record["g"]),
                    float(from_marker(record["w"])),
                    from_marker(record.get("v")),
                    from_marker(record.get("t")),
                    record.get("x"),
                )
            elif kind == "f":
                apply_finish(
                    log,
                    record["end_time"],
                    float(from_marker(record["duration_seconds"])),
                    from_marker(record.get("train_loss")),
                    from_marker(record.get("val_loss")),
                    record.get("notes"),
                )
            elif kind == "x":
                log.mirrors.update(record.get("mirrors") or {})
            elif kind == "n":
                log.notes = record.get("notes") or ""
            elif kind == "c":
                alive = False
        except (KeyError, TypeError, ValueError, LogFormatError) as exc:
            problems.append(f"{where}: bad {kind!r} record skipped ({exc})")
    if log is not None and log.status != "finished":
        log.status = "running" if alive else "unfinished"
    return log, problems


ProblemHandler = Callable[[str], None]


def _warn(problem: str) -> None:
    warnings.warn(problem, RuntimeWarning, stacklevel=3)


def load_run(path: Path, on_problem: ProblemHandler = _warn) -> tuple[ExperimentLog, int]:
    """Load a run from its ``.json`` or ``.jsonl`` path; returns the log and its save_id."""
    path = Path(path)
    if path.suffix == JOURNAL_SUFFIX:
        document, journal = path.with_suffix(".json"), path
    else:
        document, journal = path, path.with_suffix(JOURNAL_SUFFIX)
    log: ExperimentLog | None = None
    save_id: int | None = None
    if document.exists():
        try:
            data = document.read_bytes()
        except OSError as exc:
            raise LogFormatError(f"{document}: cannot read ({exc})") from None
        log, save_id = decode_log(data, str(document))
        if log.status == "finished" or not journal.exists():
            if log.status == "running":
                log.status = "unfinished"
            return log, save_id
    elif not journal.exists():
        raise FileNotFoundError(f"no experiment log at {path}")
    log, problems = replay_journal(journal, log, save_id)
    for problem in problems:
        on_problem(problem)
    if log is None:
        raise LogFormatError(f"{journal}: empty journal")
    if log.source is None or not document.exists():
        log.source = str(document if document.exists() else journal)
    if not log.run_id:
        log.run_id = document.stem
    return log, save_id or 0


def load_experiment_log(path: Path | str) -> ExperimentLog:
    """Load a run saved by ``save()`` or recovered from its journal (marked unfinished)."""
    return load_run(Path(path))[0]


def write_document(path: Path, log: ExperimentLog, save_id: int) -> None:
    atomic_write(path, encode_log(log, save_id))


def now_iso() -> str:
    return datetime.now().isoformat()
