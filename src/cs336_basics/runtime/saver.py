"""Saving a run: the journal and the document, written so that ``save()`` does not stall
training and a crash at any moment loses nothing.

:class:`RunSaves` is what the tracker calls. ``save()`` takes a snapshot on the training
thread (the document's small fields and the histories' immutable chunks: milliseconds,
whatever the run's length), rotates the journal (:class:`~.journal_writer.JournalWriter`),
keeping the old file as a *kept journal*, and hands the snapshot to :class:`DocumentSaver`.
Its thread writes the document and its columnar cache through one
``store.document.DocumentWriter`` per run (in O(new rows): appended in place behind an undo
record during the run, a fresh file renamed over the old one when the head changes, as at
``finish()``), then removes the kept journals the new document holds.

Crash safety: at every moment the document on disk (or, after a crash mid-append, the old
document its undo record gives back) plus the kept journals from its ``save_id`` on plus
the live journal hold everything logged (``store.load.load_run`` replays that chain). A
SIGKILL mid-write leaves the old document and its kept journals; after the write the new
document, and kept journals it holds that the next load ignores.

Records that threads other than the training thread add (system samples, alerts found
by the journal thread, mirror states) may land in the run while a save rotates the
journal: the snapshot is therefore taken *after* the rotation, so each such record is in
the old journal (and the snapshot) or in the new journal (and perhaps the snapshot too:
replaying it is a no-op, samples and alerts being numbered). None is lost.

A newer snapshot replaces one still waiting (only the latest document matters). A failed
write is logged once (and again when writes work again); the kept journals stay, so nothing
is lost, and the next save writes everything.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.history import HistorySnapshot
from ..core.log import ExperimentLog
from ..store.codec import document_meta
from ..store.document import DocumentWriter, remove_stale_temps
from ..store.layout import RunFiles
from .journal_writer import JournalWriter

logger = logging.getLogger("cs336_basics")


@dataclass
class Snapshot:
    """What one save writes: the document's fields and the histories as they were."""

    save_id: int
    meta: dict[str, Any]
    metrics: HistorySnapshot
    superseded: HistorySnapshot
    system: HistorySnapshot | None = None


def take_snapshot(log: ExperimentLog, save_id: int) -> Snapshot:
    """The document's fields and the histories' immutable parts now (milliseconds)."""
    return Snapshot(
        save_id,
        document_meta(log, save_id),
        log.metrics_history.snapshot(),
        log.superseded_history.snapshot(),
        log.system_history.snapshot(),
    )


def _let_others_run() -> None:
    """Between two pieces of the document: let a thread waiting for the GIL (training)
    take it now instead of after the interpreter's 5 ms switch interval."""
    time.sleep(0)


class DocumentSaver:
    """One thread that writes a run's document from snapshots, newest first."""

    def __init__(self, writer: DocumentWriter, on_saved: Callable[[int], None]) -> None:
        self.writer = writer
        self.path = writer.path
        self.on_saved = on_saved
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.last_duration = 0.0
        self._pending: Snapshot | None = None
        self._busy = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, snapshot: Snapshot) -> None:
        """Queue a snapshot (replacing one not started yet); returns at once."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the document saver is closed")
            self._pending = snapshot
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"cs336-save-{self.path.stem}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        """A save is waiting or being written."""
        return self._pending is not None or self._busy

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every queued save is written (or failed); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, then stop the thread; False if that took over ``timeout``."""
        done = self.wait(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        return done

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                snapshot = self._pending
                if snapshot is None:
                    return
                self._pending = None
                self._busy = True
            try:
                self._write(snapshot)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, snapshot: Snapshot) -> None:
        started = time.perf_counter()
        try:
            self.writer.write(
                snapshot.meta,
                snapshot.metrics,
                snapshot.superseded,
                pause=_let_others_run,
                system=snapshot.system,
            )
        except Exception as exc:  # disk full, EIO, ...: the kept journals hold everything
            self.failed(exc)
            return
        self.last_duration = time.perf_counter() - started
        self.wrote(snapshot.save_id)

    def failed(self, exc: BaseException) -> None:
        """A document could not be written (here, or by the caller instead)."""
        if self.error is None:
            logger.error(
                "could not write %s (%s); nothing is lost (the journals hold every record) "
                "and the next save tries again",
                self.path,
                exc,
            )
        self.error = f"{type(exc).__name__}: {exc}"
        self.exception = exc

    def wrote(self, save_id: int) -> None:
        """Document ``save_id`` is on disk (written here, or by the caller instead)."""
        if self.error is not None:
            logger.warning("%s is written again; nothing was lost", self.path)
            self.error = None
            self.exception = None
        try:
            self.on_saved(save_id)
        except Exception:  # a bug: report it, keep the thread
            logger.exception("cleaning up after saving %s failed", self.path)


class RunSaves:
    """The journal and the document of one run, saved on the tracker's behalf.

    ``save_id`` is the newest save made (the document on disk may still be being written).
    :meth:`save` rotates the journal and saves in the background; :meth:`final_save`, after
    ``finish()``, writes the complete document on the caller's thread and removes the
    journals.
    """

    def __init__(
        self,
        files: RunFiles,
        header: Callable[[int | None], bytes],
        interval: float,
        before_write: Callable[[], None],
        save_id: int = 0,
        observe: Callable[[Any], list[Any]] | None = None,
    ) -> None:
        self.files = files
        self.header = header
        self.interval = interval
        self.before_write = before_write
        self.observe = observe
        self.save_id = save_id
        self.writer = DocumentWriter(files.document)  # (it appends: saves cost O(new rows))
        self.saver = DocumentSaver(self.writer, self.remove_kept)
        self.journal: JournalWriter | None = None

    def open_journal(self, base: int | None) -> JournalWriter:
        """Start the live journal (a new run: ``base`` None; a resumed one: its save id)."""
        self.journal = JournalWriter(
            self.files, base or 0, self.header(base), self.interval, self.before_write, self.observe
        )
        return self.journal

    def resume(self, log: ExperimentLog, loaded_save_id: int) -> None:
        """Continue a loaded run: its document rewritten as the next save (so the journals
        it continues are held by it), a fresh journal, leftovers removed."""
        self.save_id = loaded_save_id + 1
        self._write(log, self.save_id)
        self.open_journal(self.save_id)
        self.remove_kept(self.save_id)
        remove_stale_temps(self.files)

    @property
    def error(self) -> str | None:
        return self.saver.error

    def save(self, log: ExperimentLog, *, segment: bool, wait: bool) -> None:
        """A save during the run (see :meth:`ExperimentTracker.save`). ``segment``: keep the
        rotated journal for a mirror process too."""
        journal = self.journal
        assert journal is not None
        save_id = max(self.save_id, journal.base) + 1
        keep = ("kept", "segment") if segment else ("kept",)
        try:
            journal.rotate(save_id, self.header(save_id), keep=keep)
        except OSError as exc:
            # The old journal cannot be kept: write the document here and now instead.
            logger.warning("save(): keeping the journal failed (%s); saving in the foreground", exc)
            self.saver.wait()  # an older snapshot must not land after this one
            snapshot = take_snapshot(log, save_id)
            try:
                self.writer.write(
                    snapshot.meta, snapshot.metrics, snapshot.superseded, system=snapshot.system
                )
            except (OSError, ValueError) as write_exc:
                # Disk full, say: nothing is lost (the journal thread keeps the records in
                # memory and retries), and the training loop is not the place to raise.
                self.saver.failed(write_exc)
                if wait:
                    raise
                return
            self.saver.wrote(save_id)
            self._rotate_after_foreground_save(journal, save_id, segment)
        else:
            self.saver.submit(take_snapshot(log, save_id))  # after the rotation: see above
        self.save_id = save_id
        if wait:
            self.wait_saved()

    def _rotate_after_foreground_save(
        self, journal: JournalWriter, save_id: int, segment: bool
    ) -> None:
        try:
            journal.rotate(save_id, self.header(save_id), keep=("segment",) if segment else ())
        except OSError as exc:
            logger.error(
                "journal %s: could not keep the rotated journal for the mirror (%s); the "
                "mirror will miss rows and be marked incomplete",
                journal.path,
                exc,
            )
            journal.rotate(save_id, self.header(save_id))

    def wait_saved(self) -> None:
        """Wait for the background write; raise its ``OSError`` if it failed."""
        saver = self.saver
        saver.wait()
        if saver.error is not None:
            cause = saver.exception
            message = f"save(): the document could not be written: {saver.error}"
            errno = getattr(cause, "errno", None)
            raise (OSError(message) if errno is None else OSError(errno, message)) from cause

    def remove_kept(self, below: int | None = None) -> None:
        """Remove the kept journals whose records the document on disk holds."""
        for base, kept in self.files.kept_journals():
            if below is None or base < below:
                with contextlib.suppress(OSError):
                    kept.unlink()

    def final_save(self, log: ExperimentLog, *, segment: bool) -> None:
        """The save after ``finish()``: synchronous; the journals go, the document is all.
        ``segment``: a mirror still reads the journal, which it then removes."""
        self.saver.close()
        self._write(log, self.save_id + 1)
        self.save_id += 1
        journal, self.journal = self.journal, None
        if journal is not None:
            keep_as = self.files.segment(journal.base) if segment else None
            journal.close(delete=True, keep_as=keep_as)
        self.remove_kept()
        remove_stale_temps(self.files)

    def _write(self, log: ExperimentLog, save_id: int) -> None:
        """Write the document now, on the caller's thread."""
        snapshot = take_snapshot(log, save_id)
        self.writer.write(
            snapshot.meta, snapshot.metrics, snapshot.superseded, system=snapshot.system
        )

    def close(self, timeout: float = 60.0) -> None:
        """Stop without finishing: the background save is waited for (the run stays locked
        until it is done: a tracker resuming the run meanwhile could have an older document
        land over its newer one), then the journal drains and closes."""
        if not self.saver.close(timeout=timeout):
            logger.warning(
                "close(): the background save of %s is still running after %g s; waiting for "
                "it (the journals keep everything it would hold)",
                self.files.document,
                timeout,
            )
            self.saver.close()
