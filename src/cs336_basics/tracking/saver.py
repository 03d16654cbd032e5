"""Writing a run's document on a background thread, so that ``save()`` does not stall training.

``tracker.save()`` takes a snapshot on the training thread (the document's small fields and
the histories' immutable chunks: milliseconds, whatever the run's length), rotates the
journal, keeping the old file as a *kept journal*, and hands the snapshot to
:class:`DocumentSaver`. Its thread writes the document (streamed to a temporary file,
fsynced, renamed over the old one) and its columnar cache, then removes the kept journals
the new document holds.

Crash safety: at every moment the document on disk plus the kept journals from its
``save_id`` on plus the live journal hold everything logged (``storage.load_run`` replays
that chain). A SIGKILL mid-write leaves the old document (the rename did not happen) and
its kept journals; after the rename the new document, and kept journals it holds that the
next load ignores.

A newer snapshot replaces one still waiting (only the latest document matters). A failed
write is logged once (and again when writes work again); the kept journals stay, so nothing
is lost, and the next save writes everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .history import HistorySnapshot
from .storage import write_snapshot

logger = logging.getLogger("cs336_basics")


@dataclass
class Snapshot:
    """What one save writes: the document's fields and the histories as they were."""

    save_id: int
    meta: dict[str, Any]
    metrics: HistorySnapshot
    superseded: HistorySnapshot


def _let_others_run() -> None:
    """Between two pieces of the document: let a thread waiting for the GIL (training)
    take it now instead of after the interpreter's 5 ms switch interval."""
    time.sleep(0)


class DocumentSaver:
    """One thread that writes a run's document from snapshots, newest first."""

    def __init__(self, path: Path, on_saved: Callable[[int], None]) -> None:
        self.path = path
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
            metrics, superseded = snapshot.metrics.chunks(), snapshot.superseded.chunks()
            write_snapshot(self.path, snapshot.meta, metrics, superseded, pause=_let_others_run)
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
