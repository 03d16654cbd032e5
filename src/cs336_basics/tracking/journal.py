"""The journal: the run's append-only ``.jsonl`` file, its records, its writer and its replay.

This module owns the format. One JSON object per line; ``k`` names the record kind:

========  =====================================================================
``h``     header, always the first line: run id, config, start time, notes, the
          ``save_id`` of the document it continues (``base``), writer pid and host
``m``     a metrics row: ``{"k": "m", "r": <the row as in metrics_history>}``
``e``     an eval: iteration ``i``, gradient step ``g``, wall-clock ``w``, val loss
          ``v``, train loss ``t``, extra metrics ``extra``
``f``     finish: end time, duration, explicit final losses, notes
``x``     a mirror's state: ``{"k": "x", "mirrors": {name: state}}``
``n``     notes replaced
``c``     the tracker was closed without finishing (the run is not live any more)
========  =====================================================================

Floats that are NaN or infinite are written as the document writes them (``"NaN"``,
``"Infinity"``, ``"-Infinity"``). A torn last line (the process died mid-write) is skipped.

:class:`JournalWriter` appends from a background thread; the training thread only queues.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from .codec import dumps, plain, row_from_dict, unmark
from .errors import LogFormatError
from .records import (
    FORMAT_VERSION,
    ExperimentConfig,
    ExperimentLog,
    MetricsSnapshot,
    apply_eval,
    apply_finish,
    apply_metrics,
)
from .values import from_marker

logger = logging.getLogger("cs336_basics")

SUFFIX = ".jsonl"
KIND = "k"
HEADER = "h"
ROW = "m"
EVAL = "e"
FINISH = "f"
MIRROR = "x"
NOTES = "n"
CLOSED = "c"
#: Longest wait between two tries to write after an I/O error (disk full, EIO).
RETRY_MAX_S = 5.0


# ---------------------------------------------------------------------------------------
# Encoding.


def encode_header(log: ExperimentLog, base_save_id: int | None, pid: int, host: str) -> bytes:
    record = {
        KIND: HEADER,
        "format_version": FORMAT_VERSION,
        "run_id": log.run_id,
        "config": plain(log.config.to_dict()),
        "start_time": log.start_time,
        "notes": log.notes,
        "base": base_save_id,
        "pid": pid,
        "host": host,
    }
    return dumps(record) + b"\n"


def encode_row(row: MetricsSnapshot) -> bytes:
    return b'{"k":"m","r":' + dumps(row) + b"}\n"


def eval_record(
    iteration: int,
    gradient_step: int,
    wallclock_time: float,
    val_loss: float | None,
    train_loss: float | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        KIND: EVAL,
        "i": iteration,
        "g": gradient_step,
        "w": wallclock_time,
        "v": val_loss,
        "t": train_loss,
        "extra": extra,
    }


def finish_record(
    end_time: str,
    duration_seconds: float,
    train_loss: float | None,
    val_loss: float | None,
    notes: str | None,
) -> dict[str, Any]:
    return {
        KIND: FINISH,
        "end_time": end_time,
        "duration_seconds": duration_seconds,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "notes": notes,
    }


def mirror_record(name: str, state: dict[str, Any]) -> dict[str, Any]:
    return {KIND: MIRROR, "mirrors": {name: dict(state)}}


def notes_record(notes: str) -> dict[str, Any]:
    return {KIND: NOTES, "notes": notes}


def closed_record() -> dict[str, Any]:
    return {KIND: CLOSED}


def encode_record(record: MetricsSnapshot | dict[str, Any]) -> bytes:
    """One journal line for a queued record (a metrics row or one of the dicts above)."""
    if type(record) is MetricsSnapshot:
        return encode_row(record)
    return dumps(record) + b"\n"


# ---------------------------------------------------------------------------------------
# Writing.


def _write(fd: int, data: memoryview) -> int:
    """One ``os.write`` (a seam for fault-injection tests); returns the bytes written."""
    return os.write(fd, data)


class JournalWriter:
    """Appends journal lines from a background thread.

    The training thread calls :meth:`append` (a deque append, no I/O). The thread encodes
    and writes what is pending every ``interval`` seconds or when woken. An I/O error (disk
    full, EIO) never stops it: the bytes not yet written stay in memory, the thread tries
    again with a growing pause (up to :data:`RETRY_MAX_S`), reports the problem once through
    the ``cs336_basics`` logger and once more when it clears; :attr:`error` and
    :attr:`backlog` show it meanwhile. :meth:`close` drains what is pending before it returns.

    ``before_write`` (optional) runs on the thread before each write; the tracker uses it to
    convert accelerator values that have waited too long. It must not raise (if it does,
    the error is logged and the thread goes on).
    """

    def __init__(
        self,
        path: Path,
        header: bytes,
        interval: float = 0.25,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.interval = interval
        self.before_write = before_write
        self.error: str | None = None
        self._error_since = 0.0
        self._pending: deque[Any] = deque()
        self._unwritten = b""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._header: bytes | None = header
        self._fd: int | None = None
        self._open_fresh()  # at start an unwritable log dir is the caller's error
        self._thread = threading.Thread(
            target=self._run, name=f"cs336-journal-{path.stem}", daemon=True
        )
        self._thread.start()

    # --- any thread -----------------------------------------------------------------
    def append(self, record: Any) -> None:
        """Queue a record: a ``MetricsSnapshot`` or a dict (encoded on the writer thread)."""
        self._pending.append(record)

    def wake(self) -> None:
        self._wake.set()

    @property
    def backlog(self) -> int:
        """Records (and a partly written line, as one) not yet in the file."""
        return len(self._pending) + (1 if self._unwritten else 0)

    # --- writing (under the lock) ---------------------------------------------------
    def _open_fresh(self) -> None:
        """Replace the file with one holding only the header (atomically)."""
        header = self._header
        assert header is not None
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                handle.write(header)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._header = None

    def _encode_pending(self) -> bytes:
        chunks = []
        pending = self._pending
        while pending:
            record = pending.popleft()
            try:
                chunks.append(encode_record(record))
            except (TypeError, ValueError) as exc:  # validated at the call: a bug if reached
                logger.error(
                    "journal %s: a record could not be encoded and is left out: %s", self.path, exc
                )
        return b"".join(chunks)

    def _write_pending(self, sync: bool = False) -> None:
        """Write everything pending (and ``fsync`` with ``sync``); OSError leaves it pending."""
        with self._lock:
            self._write_locked(sync)

    def _write_locked(self, sync: bool) -> None:
        if self._fd is None:
            if self._header is None:
                return  # closed
            self._open_fresh()
        assert self._fd is not None
        data = self._unwritten + self._encode_pending()
        self._unwritten = b""
        done = 0
        view = memoryview(data)
        try:
            while done < len(data):
                done += _write(self._fd, view[done:])
        finally:
            view.release()
            if done < len(data):
                self._unwritten = data[done:]
        if sync:
            os.fsync(self._fd)

    def _failed(self, exc: OSError) -> None:
        if self.error is None:
            self._error_since = time.monotonic()
            logger.error(
                "cannot write the journal %s (%s); %d record(s) wait in memory and are "
                "retried every few seconds. Until this clears the journal is behind: a crash "
                "would lose them (the tracker's health() shows the backlog).",
                self.path,
                exc,
                self.backlog,
            )
        self.error = f"{type(exc).__name__}: {exc}"

    def _recovered(self) -> None:
        if self.error is not None:
            logger.warning(
                "the journal %s is written again after %.1f s; nothing was lost",
                self.path,
                time.monotonic() - self._error_since,
            )
            self.error = None

    # --- the thread -----------------------------------------------------------------
    def _run(self) -> None:
        delay = self.interval
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            stopping = self._stopping  # read before writing: a stop still gets one full write
            if self.before_write is not None:
                try:
                    self.before_write()
                except Exception:
                    logger.exception("journal %s: preparing rows failed", self.path)
            try:
                self._write_pending()
            except OSError as exc:
                self._failed(exc)
                delay = min(max(delay * 2, self.interval), RETRY_MAX_S)
            except Exception:  # a bug: report it, keep the thread alive
                logger.exception("journal %s: unexpected error while writing", self.path)
            else:
                self._recovered()
                delay = self.interval
            if stopping:
                return

    # --- training thread ------------------------------------------------------------
    def flush(self, sync: bool = False) -> None:
        """Write everything pending now, on the caller's thread (``sync`` also fsyncs).

        Raises ``OSError`` when the file cannot be written; the records stay pending.
        """
        try:
            self._write_pending(sync=sync)
        except OSError as exc:
            self._failed(exc)
            raise
        self._recovered()

    def rotate(self, header: bytes, keep: Sequence[Path] = ()) -> None:
        """Start a fresh journal after a save.

        Without ``keep`` the old file is dropped with what is pending: the saved document
        holds it. With ``keep`` everything pending is written to the old file first, which
        then stays under each path of ``keep`` (hard links, then a rename): a *kept* journal
        that the run's loader replays until the document that holds it is on disk (a
        background save), or a *segment* that a mirror process reads to its end and
        removes. Mirror-state records are kept pending (they may be newer than the saved
        document). Raises ``OSError`` when the old file cannot be completed and kept; then
        nothing has changed. If the fresh file cannot be made, the thread makes it before
        its next write.
        """
        with self._lock:
            if keep:
                if self._fd is None:
                    raise OSError(f"the journal {self.path} is not open (see the error before)")
                self._write_locked(sync=False)
                made: list[Path] = []
                try:
                    for extra in keep[1:]:
                        os.link(self.path, extra)
                        made.append(extra)
                    os.rename(self.path, keep[0])
                except OSError:
                    for path in made:
                        with contextlib.suppress(OSError):
                            path.unlink()
                    raise
            kept = [r for r in self._pending if type(r) is dict and r.get(KIND) == MIRROR]
            self._pending.clear()
            self._pending.extend(kept)
            self._unwritten = b""
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
            self._header = header
            try:
                self._open_fresh()
            except OSError as exc:
                self._failed(exc)

    def close(
        self, delete: bool = False, timeout: float = 5.0, keep_as: Path | None = None
    ) -> None:
        """Stop the thread after it wrote everything pending (it drains, as
        ``QueueListener.stop`` does), then close the file. ``delete`` removes the file, or,
        with ``keep_as``, renames it there (a mirror still reading it removes it)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if delete and keep_as is None:
            with self._lock:
                self._pending.clear()
                self._unwritten = b""
        else:
            try:
                self._write_pending(sync=True)  # whatever the thread left (it may hang)
            except OSError as exc:
                logger.error(
                    "closing the journal %s: %d record(s) could not be written (%s); "
                    "they are in this process's memory only",
                    self.path,
                    self.backlog,
                    exc,
                )
        with self._lock:
            self._header = None
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
        if delete:
            with contextlib.suppress(FileNotFoundError):
                if keep_as is not None:
                    os.rename(self.path, keep_as)
                else:
                    self.path.unlink()


# ---------------------------------------------------------------------------------------
# Reading.


def apply_record(
    log: ExperimentLog, record: dict[str, Any], where: str = ""
) -> MetricsSnapshot | None:
    """Apply one journal record to ``log``; returns the row a metrics or eval record changed.

    Raises ``KeyError``/``TypeError``/``ValueError`` (``LogFormatError``) for a bad record.
    Headers and ``closed`` records change nothing here.
    """
    kind = record.get(KIND)
    if kind == ROW:
        row = row_from_dict(record["r"], where or "journal row")
        apply_metrics(log, row)
        return row
    if kind == EVAL:
        extra = record.get("extra", record.get("x"))  # "x": journals written before 0.2
        if extra is not None:
            if not isinstance(extra, dict):
                raise LogFormatError(f"extra: expected an object, got {extra!r:.60}")
            extra = {str(k): from_marker(v) for k, v in extra.items()}
        return apply_eval(
            log,
            int(record["i"]),
            int(record["g"]),
            float(from_marker(record["w"])),
            from_marker(record.get("v")),
            from_marker(record.get("t")),
            extra,
        )
    if kind == FINISH:
        apply_finish(
            log,
            record["end_time"],
            float(from_marker(record["duration_seconds"])),
            from_marker(record.get("train_loss")),
            from_marker(record.get("val_loss")),
            record.get("notes"),
        )
    elif kind == MIRROR:
        mirrors = record.get("mirrors") or {}
        if not isinstance(mirrors, dict) or not all(isinstance(v, dict) for v in mirrors.values()):
            raise LogFormatError(f"mirrors: expected an object of objects, got {mirrors!r:.60}")
        log.mirrors.update(mirrors)
    elif kind == NOTES:
        notes = record.get("notes") or ""
        if not isinstance(notes, str):
            raise LogFormatError(f"notes: expected a string, got {type(notes).__name__}")
        log.notes = notes
    return None


def header_of(data: bytes) -> dict[str, Any] | None:
    """The header record at the start of a journal's bytes, or None."""
    try:
        record = orjson.loads(data[: data.find(b"\n")] if b"\n" in data else data)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and record.get(KIND) == HEADER else None


def read_header(path: Path) -> dict[str, Any] | None:
    """The journal's header record, or None (no file, or no complete header yet)."""
    try:
        with open(path, "rb") as handle:
            return header_of(handle.readline())
    except OSError:
        return None


def replay(
    path: Path,
    log: ExperimentLog | None,
    base_save_id: int | None,
    is_alive: Callable[[Any, Any], bool],
    data: bytes | None = None,
) -> tuple[ExperimentLog | None, list[str]]:
    """Apply a journal's records to ``log`` (or build a log from its header).

    Returns the log (``None`` when the journal is empty) and a list of problems met (torn or
    unreadable lines, bad records), which never stop the replay. A journal whose ``base`` is
    not ``base_save_id`` is stale (the document already holds its records) and is skipped.
    ``is_alive(pid, host)`` tells whether the writer named in the header still runs.
    ``data``: the file's bytes, read earlier by the caller (then ``path`` only names it).
    """
    problems: list[str] = []
    try:
        lines = (path.read_bytes() if data is None else data).split(b"\n")
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
        kind = record.get(KIND) if isinstance(record, dict) else None
        if header is None:
            if kind != HEADER:
                raise LogFormatError(f"{path}: not a journal (first record is not a header)")
            header = record
            alive = is_alive(record.get("pid"), record.get("host"))
            if log is not None and record.get("base") != base_save_id:
                if log.status != "finished":
                    log.status = "running" if alive else "unfinished"
                return log, problems
            if log is None:
                try:
                    config = ExperimentConfig.from_dict(unmark(record.get("config") or {}))
                except (TypeError, ValueError) as exc:
                    raise LogFormatError(f"{path}: bad config in the header: {exc}") from exc
                for name in ("start_time", "notes", "run_id"):
                    value = record.get(name)
                    if value is not None and not isinstance(value, str):
                        raise LogFormatError(
                            f"{path}: header {name}: expected a string or null, got {value!r:.40}"
                        )
                log = ExperimentLog(
                    config=config,
                    start_time=record.get("start_time"),
                    notes=record.get("notes") or "",
                    run_id=str(record.get("run_id") or path.stem),
                    source=str(path),
                )
            continue
        assert log is not None
        where = f"{path}: line {number}"
        if kind == CLOSED:
            alive = False
        try:
            apply_record(log, record, where)
        except (KeyError, TypeError, ValueError) as exc:  # LogFormatError is a ValueError
            problems.append(f"{where}: bad {kind!r} record skipped ({exc})")
    if log is not None and log.status != "finished":
        log.status = "running" if alive else "unfinished"
    return log, problems


# ---------------------------------------------------------------------------------------
# Following a live journal (a mirror process reads it while the tracker writes it).


def segment_path(journal: Path, base: int | None) -> Path:
    """Where a rotated journal whose header has ``base`` is kept for a mirror."""
    return journal.with_name(f".{journal.stem}.seg-{base or 0:08d}{SUFFIX}")


def kept_path(journal: Path, base: int | None) -> Path:
    """Where a rotated journal whose header has ``base`` is kept until the document that
    holds its records is on disk (see :meth:`JournalWriter.rotate`)."""
    return journal.with_name(f".{journal.stem}.kept-{base or 0:08d}{SUFFIX}")


def kept_journals(journal: Path) -> list[tuple[int, Path]]:
    """``(base, path)`` of the run's kept journals, oldest first."""
    found = []
    for path in journal.parent.glob(f".{journal.stem}.kept-*{SUFFIX}"):
        try:
            found.append((_base_in_name(path, ".kept-"), path))
        except ValueError:
            continue
    return sorted(found)


def _base_in_name(path: Path, tag: str) -> int:
    """The base a kept journal's or segment's name carries (``.<stem><tag>NNNNNNNN.jsonl``)."""
    return int(path.name.rsplit(tag, 1)[1][: -len(SUFFIX)])


def _segment_base(path: Path) -> int:
    return _base_in_name(path, ".seg-")


class JournalFollower:
    """Reads a run's journal as the tracker writes it, across rotations, from a position.

    The journal is a chain of files: segments (rotated journals kept for a mirror, see
    :meth:`JournalWriter.rotate`), then the live ``<stem>.jsonl``, each starting with a
    header whose ``base`` orders them. The position is ``(base, offset)``: the file and the
    byte offset of the first record not yet read. A file is known to be complete once the
    live path names another file (it was rotated); the live file's last line may still grow
    and is read only once complete.
    """

    def __init__(
        self,
        journal: Path,
        base: int | None = None,
        offset: int = 0,
        writer_pid: int | None = None,
    ) -> None:
        self.journal = journal
        self.writer_pid = writer_pid
        self.base = base or 0
        self.offset = offset
        self._handle: Any = None
        self._tail = b""

    def _files(self) -> list[tuple[int, Path]]:
        """(base, path) of every file of the chain that exists now, in order."""
        found = [
            (_segment_base(p), p)
            for p in self.journal.parent.glob(f".{self.journal.stem}.seg-*{SUFFIX}")
        ]
        header = read_header(self.journal)  # None: rotation under way, or the run finished
        if header is not None and (self.writer_pid is None or header.get("pid") == self.writer_pid):
            found.append((int(header.get("base") or 0), self.journal))
        return sorted(found)

    def _open(self) -> bool:
        # Our file, or, when it is gone (a segment read to its end and removed), the next.
        chosen = next(((b, p) for b, p in self._files() if b >= self.base), None)
        if chosen is None:
            return False
        base, path = chosen
        if base != self.base:
            self.base, self.offset = base, 0
        try:
            self._handle = open(path, "rb")
        except FileNotFoundError:
            return False
        self._handle.seek(self.offset)
        self._tail = b""
        return True

    def _is_live(self) -> bool:
        try:
            return os.path.samestat(os.fstat(self._handle.fileno()), os.stat(self.journal))
        except FileNotFoundError:
            return False

    def read(self) -> list[tuple[tuple[int, int], dict[str, Any]]]:
        """The records written since the last call, each with the position after it.

        Headers are skipped; a line that is not JSON is skipped (and counted as read).
        """
        out: list[tuple[tuple[int, int], dict[str, Any]]] = []
        while True:
            if self._handle is None and not self._open():
                return out
            live = self._is_live()  # asked before reading: a rotated file is complete
            data = self._tail + self._handle.read()
            lines = data.split(b"\n")
            self._tail = lines.pop()
            for line in lines:
                self.offset += len(line) + 1
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict) and record.get(KIND) != HEADER:
                    out.append(((self.base, self.offset), record))
            if live:
                return out
            # Rotated (or removed at finish): this file is complete; go on with the next.
            self._handle.close()
            self._handle = None
            following = [(b, p) for b, p in self._files() if b > self.base]
            if not following:
                self._handle = None
                return out
            self.base, self.offset = following[0][0], 0

    def finished_segments(self, include_current: bool = False) -> list[Path]:
        """Segments wholly behind the position (safe to remove once progress is recorded);
        with ``include_current`` the one being read too (at the end of the run)."""
        return [
            p
            for b, p in self._files()
            if p != self.journal and (b < self.base or (include_current and b == self.base))
        ]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
