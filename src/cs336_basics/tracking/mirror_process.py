"""Sinks that run in a process of their own, fed from the run's journal.

A sink whose ``process_module`` is set (the W&B sink) does no work in the training process:
``start()`` launches ``python -m <process_module> <spec>``, and that process follows the
run's journal (:class:`~.journal.JournalFollower`), rebuilds the run with the same rules as
the tracker, and calls the sink's ``start``/``emit``/``emit_eval``/``finish`` there. So the
training process pays for one journal write every quarter second, whatever the sink costs.

The mirror's progress is its position in the journal (``position``: the journal file's
``base`` and a byte offset), written with the sink's state to ``.<stem>.<name>-mirror.json``
(atomically, about twice a second and at the end). Rotated journals are kept as segments
until the mirror has read them (it removes them), so a save neither loses nor repeats rows.

How a mirror ends:

- the journal says ``finish``: the sink's ``finish`` (summary, exit code 0), status as the
  sink says (``finished``);
- the journal says ``closed`` (``tracker.close()``, a planned stop): the sink's ``close``;
- the training process died (SIGKILL, OOM): everything the journal holds is forwarded, then
  the sink's ``close`` with status ``crashed``;
- SIGTERM: the sink's ``close``, status ``incomplete``;
- no progress for :data:`STALL_LIMIT_S` after the training process is gone: status
  ``incomplete`` and exit (no orphan waits forever on a hung service).

A resumed run's new mirror waits for the old one to end (a lock on the state file), then
sends the rows the old one had not sent, from the document.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import env
from .codec import decode_log, unmark
from .errors import RunInUseError
from .journal import (
    CLOSED,
    EVAL,
    FINISH,
    NOTES,
    ROW,
    JournalFollower,
    apply_record,
    read_header,
)
from .records import ExperimentConfig, ExperimentLog
from .sinks import Sink
from .storage import (
    RunLock,
    mirror_state_path,
    read_mirror_state,
    write_document,
    write_mirror_state,
)

logger = logging.getLogger("cs336_basics")

#: Seconds between two state writes while records flow.
STATE_EVERY_S = 0.5
#: Seconds between two looks at the journal when nothing new came.
POLL_S = 0.05
#: Once the training process is gone, give up after this long without progress.
STALL_LIMIT_S = 60.0
#: How long a mirror that outlived ``finish()`` waits for the tracker's last save to end.
HANDOVER_WAIT_S = 30.0
#: How much lower the mirror's CPU priority is than the training process's (``nice``); the
#: services it starts (wandb's) inherit it.
MIRROR_NICENESS = 10
#: States a mirror ends in; any other means it was still running when last recorded.
FINAL_STATES = frozenset({"finished", "disabled", "unfinished", "crashed", "incomplete", "failed"})


def log_path(document: Path, name: str) -> Path:
    return document.with_name(f".{document.stem}.{name}-mirror.log")


# ---------------------------------------------------------------------------------------
# The training-process side.


class MirrorProcess:
    """The training process's handle on one sink running in its own process."""

    def __init__(self, sink: Sink, document: Path, journal: Path, base: int) -> None:
        self.sink = sink
        self.name = sink.name
        self.state_file = mirror_state_path(document, sink.name)
        self.gave_up: str | None = None  # why finish() stopped waiting for it, if it did
        spec = {
            "name": sink.name,
            "document": str(document),
            "journal": str(journal),
            "base": base,
            "snapshot": _snapshot(document, sink.name),
            "state": str(self.state_file),
            "parent_pid": os.getpid(),
            "sink": sink.process_spec(),
        }
        # The child imports this package from where this process did (it may not be
        # installed: a source checkout on sys.path).
        package_root = str(Path(__file__).resolve().parents[2])
        child_env = dict(os.environ)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p
        )
        # Not the training process's wandb service (if it has one): it dies with it.
        child_env.pop(env.WANDB_SERVICE, None)
        with open(log_path(document, sink.name), "ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", str(sink.process_module), json.dumps(spec)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=child_env,
                start_new_session=True,  # a Ctrl-C meant for training must not kill it first
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def state(self) -> dict[str, Any]:
        """The mirror's recorded state; ``failed`` if the process died without saying so,
        ``incomplete`` while it still sends after ``finish()`` stopped waiting."""
        state = read_mirror_state(self.state_file)
        code = self.process.poll()
        if code is not None and state.get("status") not in FINAL_STATES:
            state["status"] = "failed"
            state["error"] = f"the mirror process exited with code {code}"
        elif code is None and self.gave_up:
            state["status"] = "incomplete"
            state["error"] = self.gave_up
        return state

    def give_up(self, why: str) -> None:
        """``finish()`` stops waiting: the mirror goes on by itself (see ``_hand_over``)."""
        self.gave_up = why
        _leave_running_at_exit(self.process)

    def wait(self, timeout: float) -> bool:
        """Wait for the mirror to end; False if it still runs after ``timeout`` seconds."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


_left_running: list[subprocess.Popen[bytes]] = []


def _leave_running_at_exit(process: subprocess.Popen[bytes]) -> None:
    """A mirror still sending when this process exits is meant to go on (it finishes and
    records its state by itself): tell ``subprocess`` so, to spare the ResourceWarning."""
    if not _left_running:
        atexit.register(_mark_left_running)
    _left_running.append(process)


def _mark_left_running() -> None:
    for process in _left_running:
        if process.poll() is None:
            process.returncode = 0  # not waited for, on purpose


def _snapshot(document: Path, name: str) -> str | None:
    """The document as it is now, for a mirror starting later (a hard link: no copy)."""
    if not document.exists():
        return None
    snapshot = snapshot_path(document, name)
    with contextlib.suppress(FileNotFoundError):
        snapshot.unlink()
    try:
        os.link(document, snapshot)
    except OSError:  # a file system without hard links
        shutil.copyfile(document, snapshot)
    return str(snapshot)


def snapshot_path(document: Path, name: str) -> Path:
    return document.with_name(f".{document.stem}.{name}-mirror-start.json")


# ---------------------------------------------------------------------------------------
# The mirror-process side.


class _Mirror:
    def __init__(self, sink: Sink, spec: dict[str, Any]) -> None:
        self.sink = sink
        self.name = str(spec["name"])
        self.document = Path(spec["document"])
        self.journal = Path(spec["journal"])
        self.state_file = Path(spec["state"])
        self.parent = int(spec["parent_pid"])
        self.base = int(spec.get("base") or 0)
        self.snapshot = Path(spec["snapshot"]) if spec.get("snapshot") else None
        self.log: ExperimentLog | None = None
        self.stop_requested = False
        self.position: tuple[int, int] = (0, 0)
        self.last_progress = time.monotonic()

    def _load(self) -> ExperimentLog:
        """The run as it was when the mirror was launched: the document then (its snapshot),
        or, for a run never saved, the journal's header."""
        if self.snapshot is not None:
            log, _ = decode_log(self.snapshot.read_bytes(), str(self.document))
            with contextlib.suppress(OSError):
                self.snapshot.unlink()
            return log
        header = read_header(self.journal) or {}
        config = ExperimentConfig.from_dict(unmark(header.get("config") or {}))
        log = ExperimentLog(
            config=config,
            start_time=header.get("start_time"),
            notes=header.get("notes") or "",
            run_id=str(header.get("run_id") or self.document.stem),
        )
        return log

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
        write_mirror_state(self.state_file, state)

    def _parent_gone(self) -> bool:
        return os.getppid() != self.parent  # re-parented: the training process died

    def run(self) -> int:
        log = self.log = self._load()
        self.sink.prepare(log)  # the rows to send first, as the tracker's bind() chose
        self._record(status="starting")  # this mirror's, not the last one's, from now on
        self.sink.start(log)
        follower = JournalFollower(self.journal, base=self.base, writer_pid=self.parent)
        self.position = (follower.base, follower.offset)
        self._record()
        last_state = time.monotonic()
        ending: str | None = None
        parent_gone = False
        while ending is None:
            batch = follower.read()
            for position, record in batch:
                kind = record.get("k")
                row = apply_record(log, record)
                if kind == ROW and row is not None:
                    self.sink.emit(row)
                elif kind == EVAL and row is not None:
                    self.sink.emit_eval(row)
                elif kind == FINISH:
                    ending = "finish"
                elif kind == CLOSED:
                    ending = "closed"
                elif kind == NOTES:
                    pass  # the log's notes are updated; W&B gets them with the summary
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
            if self.stop_requested:
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
        if self.journal.exists():
            return  # the tracker still waits for this mirror: it records the state itself
        deadline = time.monotonic() + HANDOVER_WAIT_S
        while True:
            try:
                lock = RunLock.acquire(self.document.parent, self.document.stem)
                break
            except RunInUseError:  # the tracker is finishing its last save
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)
        try:
            log, save_id = decode_log(self.document.read_bytes(), str(self.document))
            log.mirrors[self.name] = read_mirror_state(self.state_file)
            write_document(self.document, log, save_id + 1)
            for leftover in (
                self.state_file,
                Path(f"{self.state_file}.lock"),
                log_path(self.document, self.name),
            ):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        finally:
            lock.release()


def _watchdog(mirror: _Mirror) -> None:
    """End a mirror that makes no progress long after the training process is gone."""
    while True:
        time.sleep(1.0)
        if mirror._parent_gone() and time.monotonic() - mirror.last_progress > STALL_LIMIT_S:
            with contextlib.suppress(Exception):
                mirror._record(
                    status="incomplete",
                    error=f"no progress for {STALL_LIMIT_S:.0f} s after training ended",
                )
            os._exit(3)


def run_mirror(sink: Sink, spec: dict[str, Any]) -> int:
    """Run ``sink`` as the mirror described by ``spec`` until the run ends (the child's
    main loop; the sink's own ``__main__`` builds the sink and calls this)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(OSError):
        os.nice(MIRROR_NICENESS)  # background work: training gets the CPU when both want it
    mirror = _Mirror(sink, spec)

    def on_term(signum: int, frame: Any) -> None:
        mirror.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watchdog, args=(mirror,), daemon=True).start()
    with open(f"{mirror.state_file}.lock", "a+b") as lock:
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
