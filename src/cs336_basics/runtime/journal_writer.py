"""The journal's writer: a background thread that appends what the training thread queues.

The format is :mod:`..store.journal`'s; the files are named by :mod:`..store.layout`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..store.fileio import atomic_file
from ..store.journal import KIND, MIRROR, encode_record
from ..store.layout import RunFiles

logger = logging.getLogger("cs336_basics")

#: Longest wait between two tries to write after an I/O error (disk full, EIO).
RETRY_MAX_S = 5.0


def _write(fd: int, data: memoryview) -> int:
    """One ``os.write`` (a seam for fault-injection tests); returns the bytes written."""
    return os.write(fd, data)


def _link_or_copy(source: Path, target: Path) -> None:
    """A second name for ``source``: a hard link, or a copy where the file system has none
    (FAT, exFAT, many FUSE mounts). A journal holds only the records since the last save."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        shutil.copyfile(source, target)


class JournalWriter:
    """Appends journal lines from a background thread.

    The training thread calls :meth:`append` (a deque append, no I/O). The thread encodes
    and writes what is pending every ``interval`` seconds or when woken. An I/O error (disk
    full, EIO) never stops it: the bytes not yet written stay in memory, the thread tries
    again with a growing pause (up to :data:`RETRY_MAX_S`), reports the problem once through
    the ``cs336_basics`` logger and once more when it clears; :attr:`error` and
    :attr:`backlog` show it meanwhile. :meth:`close` drains what is pending before it returns.

    ``base`` is the ``save_id`` of the document the journal continues (its header says so);
    :meth:`rotate` names the rotated file after it, so a name is never taken twice.

    ``before_write`` (optional) runs on the thread before each write; the tracker uses it to
    convert accelerator values that have waited too long. It must not raise (if it does,
    the error is logged and the thread goes on).

    ``observe`` (optional) sees every record as it is encoded (under the writer's lock, in
    order; rows hold plain numbers by then) and returns records to write right after it:
    the tracker's alert detection (``runtime.alerts``). It must not raise.
    """

    def __init__(
        self,
        files: RunFiles,
        base: int,
        header: bytes,
        interval: float = 0.25,
        before_write: Callable[[], None] | None = None,
        observe: Callable[[Any], list[Any]] | None = None,
    ) -> None:
        self.files = files
        self.observe = observe
        self.path = files.journal
        self.base = base
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
            target=self._run, name=f"cs336-journal-{self.path.stem}", daemon=True
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
        """Records not yet in the file: those queued, and those of a write cut short."""
        return len(self._pending) + self._unwritten.count(b"\n")

    # --- writing (under the lock) ---------------------------------------------------
    def _open_fresh(self) -> None:
        """Replace the file with one holding only the header (atomically)."""
        header = self._header
        assert header is not None
        with atomic_file(self.path, per_thread=False) as handle:
            handle.write(header)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._header = None

    def _encode_pending(self) -> bytes:
        chunks = []
        pending = self._pending
        observe = self.observe
        while pending:
            record = pending.popleft()
            try:
                chunks.append(encode_record(record))
            except (TypeError, ValueError) as exc:  # validated at the call: a bug if reached
                logger.error(
                    "journal %s: a record could not be encoded and is left out: %s", self.path, exc
                )
                continue
            if observe is not None:
                for follower in observe(record):
                    chunks.append(encode_record(follower))
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

    def rotate(self, base: int, header: bytes, keep: Sequence[str] = ()) -> None:
        """Start a fresh journal continuing document ``base`` (``header`` says so).

        Without ``keep`` the old file is dropped with what is pending: the saved document
        holds it. ``keep`` names what the old file becomes, after everything pending was
        written to it: ``"kept"`` (``.RUN.kept-N.jsonl``, replayed by the loader until the
        document that holds it is on disk: a background save) and/or ``"segment"``
        (``.RUN.seg-N.jsonl``, read to its end and removed by a mirror process), ``N`` being
        the old file's base. Mirror-state records are kept pending (they may be newer than
        the saved document). Raises ``OSError`` when the old file cannot be completed and
        kept; then nothing has changed. If the fresh file cannot be made, the thread makes
        it before its next write.
        """
        with self._lock:
            if keep:
                if self._fd is None:
                    raise OSError(f"the journal {self.path} is not open (see the error before)")
                self._write_locked(sync=False)
                names = {"kept": self.files.kept, "segment": self.files.segment}
                targets = [names[kind](self.base) for kind in keep]
                made: list[Path] = []
                try:
                    for extra in targets[1:]:
                        _link_or_copy(self.path, extra)
                        made.append(extra)
                    os.rename(self.path, targets[0])
                except OSError:
                    for path in made:
                        with contextlib.suppress(OSError):
                            path.unlink()
                    raise
            kept = [r for r in self._pending if type(r) is dict and r.get(KIND) == MIRROR]
            if self.observe is not None and not keep:  # dropped unwritten: judged all the same
                for record in self._pending:
                    kept += self.observe(record)
            self._pending.clear()
            self._pending.extend(kept)
            self._unwritten = b""
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
            self._header = header
            self.base = base
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
