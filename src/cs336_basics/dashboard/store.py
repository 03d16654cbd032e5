"""The runs of a log directory, kept current: loaded in worker processes, followed live.

A thread polls the directory every ``interval`` seconds (0.2 by default):

- ``store.layout.run_files`` lists the runs (hidden ``.<stem>.*`` files are never runs);
  a new one is loaded, one whose files are gone is dropped;
- a run whose document changed (``save()`` replaced it, ``finish()`` completed it) is
  reloaded; the document is compared by inode, size and modification time;
- a run with a journal is followed (:mod:`.follow`), so a logged row shows at the next poll;
- a run whose writer process has died without closing shows as unfinished.

Loading happens in up to two worker processes (:mod:`.loader`), so a big document neither
blocks the server nor grows its memory. Nothing is ever written to the log directory.
Every change bumps :attr:`RunStore.version` and wakes :meth:`RunStore.wait`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.log import ExperimentLog, RunResults
from ..store import journal
from ..store.layout import RunFiles, run_files
from ..store.lock import pid_alive
from .follow import Follower
from .loader import Loaded, load

logger = logging.getLogger("cs336_basics")
_PID_CHECK_S = 1.0
_versions = itertools.count(1)


def new_version() -> int:
    """A number never used before in this process (caches key curves by it)."""
    return next(_versions)


@dataclass
class RunView:
    """One run as the page reads it: the log, a version number that changes with every
    change (caches of curves are keyed by it), and the first chart's fine thinnings."""

    run_id: str
    log: ExperimentLog
    version: int
    fine: dict[Any, Any] = field(default_factory=dict)
    _results: RunResults | None = None

    @property
    def results(self) -> RunResults:
        """The run's ``results()`` (computed once per version)."""
        if self._results is None:
            self._results = self.log.results()
        return self._results

    def frozen(self) -> RunView:
        """A copy for readers while the run goes on (the history's blocks are shared)."""
        log = copy.copy(self.log)
        log.metrics_history = copy.copy(self.log.metrics_history)
        log.superseded_history = copy.copy(self.log.superseded_history)
        log.system_history = copy.copy(self.log.system_history)
        log.alerts = list(self.log.alerts)
        log.mirrors = dict(self.log.mirrors)
        return RunView(self.run_id, log, self.version, dict(self.fine))


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class Entry:
    """One run of the directory, as the store tracks it."""

    run_id: str
    path: Path
    data: RunView | None = None
    error: str | None = None
    follower: Follower | None = None
    document: tuple[int, int, int] | None = None
    pending: Future[Loaded] | None = None
    again: bool = False
    changed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    frozen: RunView | None = None
    checked: float = 0.0


class RunStore:
    """The runs of ``log_dir``: ``entries`` by run id (the file stem)."""

    def __init__(self, log_dir: Path, interval: float = 0.2, workers: int | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.interval = interval
        self.entries: dict[str, Entry] = {}
        self.version = 0
        self._changed = threading.Condition()
        self._workers = workers or max(1, min(2, os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life -----------------------------------------------------------------------
    def start(self) -> None:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="cs336-dashboard-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for entry in self.entries.values():
            if entry.follower is not None:
                entry.follower.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a bug: report it, keep serving
                logger.exception("dashboard: polling %s failed", self.log_dir)

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called (event streams end then)."""
        return self._stop.is_set()

    @property
    def loading(self) -> int:
        """Runs not loaded yet (first load under way)."""
        return sum(1 for e in list(self.entries.values()) if e.data is None and e.error is None)

    # --- reading (request threads) -------------------------------------------------
    def snapshot(self, run_id: str) -> RunView | None:
        """The run, safe to read while it goes on (a copy per version for a followed run;
        the loaded object itself for one that no longer changes)."""
        entry = self.entries.get(run_id)
        if entry is None or entry.data is None:
            return None
        with entry.lock:
            data = entry.data
            if entry.follower is None:
                return data
            if entry.frozen is None or entry.frozen.version != data.version:
                entry.frozen = data.frozen()
            return entry.frozen

    def wait(self, seen: int, timeout: float) -> int:
        """Block until :attr:`version` passes ``seen`` (or ``timeout``); returns it."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen or self._stop.is_set(), timeout)
            return self.version

    def _bump(self, entry: Entry | None) -> None:
        with self._changed:
            self.version += 1
            if entry is not None:
                entry.changed = self.version
            self._changed.notify_all()

    # --- polling (the poll thread) --------------------------------------------------
    def poll(self) -> None:
        found = {p.stem: p for p in run_files(self.log_dir)} if self.log_dir.is_dir() else {}
        for run_id in [r for r in self.entries if r not in found]:
            entry = self.entries.pop(run_id)
            if entry.follower is not None:
                entry.follower.close()
            self._bump(None)
        for run_id, path in found.items():
            known = self.entries.get(run_id)
            if known is None:
                entry = self.entries[run_id] = Entry(run_id, path)
                self._load(entry)
                self._bump(entry)
                continue
            entry = known
            entry.path = path
            self._poll_entry(entry)

    def _poll_entry(self, entry: Entry) -> None:
        if entry.pending is not None:
            if not entry.pending.done():
                self._follow(entry)  # rows of the journal show on the columns held
                return
            self._landed(entry)
        if _signature(RunFiles.of(entry.path).document) != entry.document:
            self._load(entry)
        self._follow(entry)

    def _follow(self, entry: Entry) -> None:
        follower = entry.follower
        if follower is None or entry.data is None:
            return
        data = entry.data
        with entry.lock:
            changed = follower.poll()
            now = time.monotonic()
            if data.log.status == "running" and now - entry.checked > _PID_CHECK_S:
                entry.checked = now
                header = journal.read_header(follower.path)
                if header is None or not pid_alive(header.get("pid"), header.get("host")):
                    data.log.status = "unfinished"
                    changed = True
            if changed:
                data.version = new_version()
                data.fine = {}
                data._results = None
        if changed:
            self._bump(entry)

    def _load(self, entry: Entry) -> None:
        if entry.pending is not None:
            entry.again = True
            return
        entry.document = _signature(RunFiles.of(entry.path).document)
        entry.again = False
        for _ in range(2):
            try:
                entry.pending = self._executor().submit(load, str(entry.path))
                return
            except BrokenProcessPool:
                self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def _landed(self, entry: Entry) -> None:
        future, entry.pending = entry.pending, None
        assert future is not None
        try:
            loaded = future.result()
        except BrokenProcessPool:
            self._pool = None
            entry.again = True
        except Exception as exc:  # LogFormatError, OSError: the run is listed as unreadable
            message = f"{entry.path}: {exc}"
            if entry.error != message:
                logger.warning("dashboard: cannot read run %s", message)
            entry.error = message
            self._bump(entry)
        else:
            for problem in loaded.problems:
                logger.warning("dashboard: %s", problem)
            view = RunView(entry.run_id, loaded.log, new_version(), loaded.fine)
            with entry.lock:
                if entry.follower is not None:
                    entry.follower.close()
                entry.data, entry.error, entry.frozen = view, None, None
                entry.follower = (
                    Follower(view.log, RunFiles.of(entry.path), loaded.base, loaded.offset)
                    if loaded.follow
                    else None
                )
            self._bump(entry)
        if entry.again:
            with contextlib.suppress(RuntimeError):  # the pool is shutting down
                self._load(entry)

    def describe(self) -> dict[str, Any]:
        """For logs and tests: how many runs, loaded, failed."""
        entries = list(self.entries.values())
        return {
            "runs": len(entries),
            "loaded": sum(1 for e in entries if e.data is not None),
            "errors": sum(1 for e in entries if e.error is not None),
        }
