"""A sink's own process, following the run's journal: the mirror side.

Started by :class:`~.mirrors.MirrorProcess` as ``python -I -S -c <boot> PATHS SPEC``; ``SPEC``
names the run's document, the training process's pid, the module that builds the sink
(``build_sink(settings)``) and the sink's settings. The run is loaded with the one loader
(``store.load.load_run``), which says where in the live journal it stopped; from there
:class:`~..store.journal.JournalFollower` reads the records the training process writes
(only that process's: a tracker that resumed the run meanwhile has a mirror of its own),
applies them with the same rules as the tracker and hands them to the sink.

Its progress (the journal position) and the sink's state go to ``.RUN.SINK-mirror.json``
about twice a second. Rotated journals kept for it (segments) are removed once read.

How a mirror ends:

- the journal says ``finish``: the sink's ``finish`` (summary, exit code 0), status as the
  sink says (``finished``);
- the journal says ``closed`` (``tracker.close()``, a planned stop): the sink's ``close``,
  status ``unfinished``;
- the training process died (SIGKILL, OOM): everything the journal holds is forwarded, then
  the sink's ``close`` with status ``crashed``;
- SIGTERM: the sink's ``close``, status ``incomplete``; a mirror stuck in a call for more
  than :data:`STOP_GRACE_S` after SIGTERM records ``incomplete`` and exits;
- no progress for :data:`STALL_LIMIT_S` after the training process is gone: status
  ``incomplete`` and exit (no orphan waits forever on a hung service).

A resumed run's new mirror waits for the old one to end (a lock on the state file), then
sends the rows the old one had not sent.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import threading
import time
from typing import Any

from ..core.errors import RunInUseError
from ..core.log import ExperimentLog
from ..store.codec import decode_log
from ..store.document import recover, write_document
from ..store.fileio import read_state, write_state
from ..store.journal import (
    ALERT,
    CLOSED,
    EVAL,
    FINISH,
    ROW,
    SYSTEM,
    UPDATE,
    JournalFollower,
    apply_record,
)
from ..store.layout import RunFiles
from ..store.load import load_run
from ..store.lock import RunLock
from .sinks import Sink

logger = logging.getLogger("cs336_basics")

#: Seconds between two state writes while records flow.
STATE_EVERY_S = 0.5
#: Seconds between two looks at the journal when nothing new came.
POLL_S = 0.05
#: Once the training process is gone, give up after this long without progress.
STALL_LIMIT_S = 60.0
#: After SIGTERM, how long a mirror may take to close its sink before it just exits.
STOP_GRACE_S = 5.0
#: How long a mirror that outlived ``finish()`` waits for the tracker's last save to end.
HANDOVER_WAIT_S = 30.0
#: How much lower the mirror's CPU priority is than the training process's (``nice``); the
#: services it starts (wandb's) inherit it.
MIRROR_NICENESS = 10


class _Mirror:
    def __init__(self, sink: Sink, spec: dict[str, Any]) -> None:
        self.sink = sink
        self.name = str(spec["name"])
        self.files = RunFiles.of(spec["document"])
        self.state_file = self.files.mirror_state(self.name)
        self.parent = int(spec["parent_pid"])
        self.log: ExperimentLog | None = None
        self.stop_requested: float | None = None
        self.position: tuple[int, int] = (0, 0)
        self.last_progress = time.monotonic()
        sink.on_state = lambda state: self._record()  # the sink's own progress reports

    def _record(self, status: str | None = None, error: str | None = None) -> None:
        state = dict(self.sink.state())
        if status is not None:
            state["status"] = status
        if error is not None:
            state["error"] = error
        state["position"] = list(self.position)
        state["pid"] = os.getpid()
        if self.log is not None:  # lets a later backlog see restarts made since
            state["superseded"] = len(self.log.superseded_history)
        write_state(self.state_file, state)

    def _parent_gone(self) -> bool:
        return os.getppid() != self.parent  # re-parented: the training process died

    def run(self) -> int:
        loaded = load_run(self.files.document, lambda problem: None, cache=False, lazy=False)
        log = self.log = loaded.log
        self.sink.prepare(log)  # the rows to send first, as the tracker's bind() chose
        self._record(status="starting")  # this mirror's, not the last one's, from now on
        self.sink.start(log)
        base, offset = loaded.position
        follower = JournalFollower(self.files, base=base, offset=offset, writer_pid=self.parent)
        self.position = (follower.base, follower.offset)
        self._record()
        last_state = time.monotonic()
        ending: str | None = None
        if log.finished:  # the loader read the journal's finish record already
            ending = "finish"
        elif log.status != "running":  # ... or its closed record (or the writer is gone)
            ending = "crashed" if self._parent_gone() else "closed"
        parent_gone = False
        while ending is None:
            batch = follower.read()
            for position, record in batch:
                kind = record.get("k")
                alerts = len(log.alerts)
                row = apply_record(log, record)
                if kind == ROW and row is not None:
                    self.sink.emit(row)
                elif kind == EVAL and row is not None:
                    self.sink.emit_eval(row)
                elif kind == UPDATE and row is not None:
                    self.sink.emit_update(row, dict(record.get("values") or {}))
                elif kind == SYSTEM and row is not None:
                    self.sink.emit_system(row)
                elif kind == ALERT and len(log.alerts) > alerts:
                    self.sink.emit_alert(log.alerts[-1])
                elif kind == FINISH:
                    ending = "finish"
                elif kind == CLOSED:
                    ending = "closed"
                # notes: the log's notes are updated; W&B gets them with the summary
                self.position = position
                if ending:
                    break
            now = time.monotonic()
            if batch:
                self.last_progress = now
            if now - last_state >= STATE_EVERY_S or ending:
                self._record()
                last_state = now
                for segment in follower.finished_segments():
                    with contextlib.suppress(OSError):
                        segment.unlink()
            if ending or batch:
                continue
            if self.stop_requested is not None:
                ending = "stopped"
            elif self._parent_gone():
                if not parent_gone:  # read once more: it may have written, then died
                    parent_gone = True
                    continue
                ending = "crashed"
            else:
                time.sleep(POLL_S)
        follower.close()
        if ending == "finish":
            self.sink.finish(log)
            self._record()
            self._hand_over()
        else:
            status = {"closed": "unfinished", "crashed": "crashed", "stopped": "incomplete"}
            self.sink.close()
            self._record(status=status[ending])
        if ending == "finish" or ending == "crashed":
            for segment in follower.finished_segments(include_current=True):
                with contextlib.suppress(OSError):
                    segment.unlink()
        return 0

    def _hand_over(self) -> None:
        """After ``finish()`` stopped waiting for this mirror (the tracker made its last save
        and removed the live journal): record the final state in the document itself and
        remove the mirror's files. The run lock makes this the only writer."""
        if self.files.journal.exists():
            return  # the tracker still waits for this mirror: it records the state itself
        deadline = time.monotonic() + HANDOVER_WAIT_S
        while True:
            try:
                lock = RunLock.acquire(self.files, purpose=f"{self.name} mirror")
                break
            except RunInUseError:  # the tracker is finishing its last save
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)
        try:
            recover(self.files)
            document = self.files.document
            log, save_id = decode_log(document.read_bytes(), str(document))
            log.mirrors[self.name] = read_state(self.state_file)
            write_document(document, log, save_id + 1)
            for leftover in self.files.mirror_files(self.name):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        finally:
            lock.release()


def _watchdog(mirror: _Mirror) -> None:
    """End a mirror that makes no progress long after the training process is gone, or
    that is stuck in a call after SIGTERM."""
    while True:
        time.sleep(0.5)
        why = None
        stopped = mirror.stop_requested
        if stopped is not None and time.monotonic() - stopped > STOP_GRACE_S:
            why = f"stopped by SIGTERM while stuck in a call for {STOP_GRACE_S:g} s"
        elif mirror._parent_gone() and time.monotonic() - mirror.last_progress > STALL_LIMIT_S:
            why = f"no progress for {STALL_LIMIT_S:.0f} s after training ended"
        if why is not None:
            logger.error("the %s mirror ends: %s", mirror.name, why)
            with contextlib.suppress(Exception):
                mirror._record(status="incomplete", error=why)
            os._exit(3)


def run_mirror(sink: Sink, spec: dict[str, Any]) -> int:
    """Run ``sink`` as the mirror described by ``spec`` until the run ends."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(OSError):
        os.nice(MIRROR_NICENESS)  # background work: training gets the CPU when both want it
    mirror = _Mirror(sink, spec)

    def on_term(signum: int, frame: Any) -> None:
        if mirror.stop_requested is None:
            mirror.stop_requested = time.monotonic()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watchdog, args=(mirror,), daemon=True).start()
    with open(mirror.files.mirror_lock(mirror.name), "a+b") as lock:
        _wait_for_lock(lock)  # a resumed run: the previous mirror ends first
        try:
            return mirror.run()
        except Exception as exc:
            logger.exception("the %s mirror failed", mirror.name)
            with contextlib.suppress(Exception):
                mirror.sink.close()
            with contextlib.suppress(Exception):
                mirror._record(status="failed", error=f"{type(exc).__name__}: {exc}")
            return 1


def _wait_for_lock(handle: Any) -> None:
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def main(argv: list[str]) -> int:
    """The mirror process's entry: ``argv`` is ``[SPEC]`` (JSON, see the module docstring)."""
    spec = json.loads(argv[0])
    try:
        module = importlib.import_module(str(spec["module"]))
        sink = module.build_sink(dict(spec["sink"]))
    except Exception as exc:  # cannot even build the sink: say so where the tracker looks
        logging.basicConfig(level=logging.INFO)
        logger.exception("the %s mirror could not start", spec.get("name"))
        state_file = RunFiles.of(spec["document"]).mirror_state(str(spec["name"]))
        with contextlib.suppress(Exception):
            write_state(
                state_file,
                {"status": "failed", "error": f"not started: {type(exc).__name__}: {exc}"},
            )
        return 1
    return run_mirror(sink, spec)
