"""Sinks that run in a process of their own, fed from the run's journal: the training side.

A sink whose ``process_module`` is set (the W&B sink) does no work in the training process:
:class:`Mirrors` launches ``<process_module>`` in a child process
(:mod:`.mirror_child` runs there), which follows the run's journal and calls the sink's
``start``/``emit``/``emit_eval``/``finish``. So the training process pays for one journal
write every quarter second, whatever the sink costs.

The child records its state and its position in the journal in ``.RUN.SINK-mirror.json``
(about twice a second). :meth:`Mirrors.watch`, called from the journal thread about once a
second, reads it and says on the ``cs336_basics`` logger, once, when a mirror falls back to
offline mode, fails or dies: a mirror never fails in silence.

The child is started isolated (``python -I -S``) with this process's ``sys.path`` less the
script's folder and the working folder: it imports the real ``wandb`` whatever aliases the
training process set up (a ``sitecustomize.py``, a ``wandb.py`` beside the script).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..core import env
from ..core.log import ExperimentLog
from ..store.fileio import read_state
from ..store.layout import RunFiles
from .sinks import Sink

logger = logging.getLogger("cs336_basics")

#: States a mirror ends in; any other means it was still running when last recorded.
FINAL_STATES = frozenset({"finished", "disabled", "unfinished", "crashed", "incomplete", "failed"})
#: How often :meth:`Mirrors.watch` reads the mirrors' states (seconds).
WATCH_EVERY_S = 1.0

_BOOT = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from cs336_basics.runtime.mirror_child import main; sys.exit(main(sys.argv[2:]))"
)


def child_sys_path() -> list[str]:
    """The import path for a mirror process: this package's root first, then this
    process's ``sys.path`` without the script's folder and the working folder (where a
    ``wandb.py`` meant for the training script would shadow the real client)."""
    package_root = str(Path(__file__).resolve().parents[2])
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    skip = {"", os.getcwd()}
    if script:
        skip.add(str(Path(script).resolve().parent))
    paths = [package_root]
    for entry in sys.path:
        if not entry or entry in skip or entry in paths:
            continue
        with contextlib.suppress(OSError):
            if str(Path(entry).resolve()) in skip:
                continue
        paths.append(entry)
    return paths


class MirrorProcess:
    """The training process's handle on one sink running in its own process."""

    def __init__(self, sink: Sink, files: RunFiles, base: int) -> None:
        self.sink = sink
        self.name = sink.name
        self.files = files
        self.state_file = files.mirror_state(sink.name)
        self.gave_up: str | None = None  # why finish() stopped waiting for it, if it did
        self.reported: set[str] = set()
        spec = {
            "name": sink.name,
            "document": str(files.document),
            "base": base,
            "snapshot": _snapshot(files, sink.name),
            "parent_pid": os.getpid(),
            "module": sink.process_module,
            "sink": sink.process_spec(),
        }
        child_env = dict(os.environ)
        # Not the training process's wandb service (if it has one): it dies with it.
        child_env.pop(env.WANDB_SERVICE, None)
        command = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _BOOT,
            json.dumps(child_sys_path()),
            json.dumps(spec),
        ]
        with open(files.mirror_log(sink.name), "ab") as err:
            self.process = subprocess.Popen(
                command,
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
        state = read_state(self.state_file)
        code = self.process.poll()
        if code is not None and state.get("status") not in FINAL_STATES:
            state["status"] = "failed"
            state["error"] = f"the mirror process exited with code {code}" + _last_words(
                self.files.mirror_log(self.name)
            )
        elif code is None and self.gave_up:
            state["status"] = "incomplete"
            state["error"] = self.gave_up
        return state

    def give_up(self, why: str) -> None:
        """``finish()`` stops waiting: the mirror goes on by itself (it records its final
        state in the document when it is done)."""
        self.gave_up = why
        _leave_running_at_exit(self.process)

    def wait(self, timeout: float) -> bool:
        """Wait for the mirror to end; False if it still runs after ``timeout`` seconds."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def report(self, state: dict[str, Any]) -> None:
        """Say on the logger, once each, that the mirror went offline, failed or died."""
        status = state.get("status")
        where = state.get("sync_dir") or "its offline folder"
        if state.get("fallback") and "fallback" not in self.reported:
            self.reported.add("fallback")
            logger.warning(
                "the %s mirror could not start online (%s); it mirrors offline to %s. "
                "Upload it later with `cs336-exp push %s`.",
                self.name,
                state["fallback"],
                where,
                self.files.stem,
            )
        if status == "failed" and "failed" not in self.reported:
            self.reported.add("failed")
            logger.error(
                "the %s mirror failed: %s. Training and the local log go on; upload the run "
                "later with `cs336-exp push %s` (its log: %s)",
                self.name,
                state.get("error") or "no reason recorded",
                self.files.stem,
                self.files.mirror_log(self.name),
            )


def _last_words(log_file: Path) -> str:
    """The last line of a mirror's log, for an error message (empty when none)."""
    try:
        with open(log_file, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 2000))
            lines = [ln for ln in handle.read().decode(errors="replace").splitlines() if ln]
    except OSError:
        return ""
    return f" ({lines[-1].strip()[:300]})" if lines else ""


class Mirrors:
    """The mirror processes of one tracker: started with the run, watched, waited for."""

    def __init__(self) -> None:
        self.processes: list[MirrorProcess] = []
        self._watched = 0.0

    def start(self, sink: Sink, files: RunFiles, base: int) -> dict[str, Any] | None:
        """Launch ``sink``'s process; returns a failed state to record if it cannot start."""
        try:
            self.processes.append(MirrorProcess(sink, files, base))
        except OSError as exc:
            logger.error("could not start the %s mirror process: %s", sink.name, exc)
            return {"status": "failed", "error": f"not started: {exc}"}
        return None

    @property
    def any_alive(self) -> bool:
        return any(m.alive for m in self.processes)

    def alive(self) -> dict[str, bool]:
        return {m.name: m.alive for m in self.processes}

    def refresh(self, log: ExperimentLog) -> None:
        """Copy each mirror process's recorded state into the log."""
        for mirror in self.processes:
            state = mirror.state()
            if state:
                log.mirrors[mirror.name] = state

    def watch(self) -> None:
        """Report mirrors that went offline, failed or died (from the journal thread, at
        most once a second; never raises)."""
        now = time.monotonic()
        if not self.processes or now - self._watched < WATCH_EVERY_S:
            return
        self._watched = now
        for mirror in self.processes:
            try:
                mirror.report(mirror.state())
            except Exception:  # a report must never take the journal thread down
                logger.debug("watching the %s mirror failed", mirror.name, exc_info=True)

    def wait(self, log: ExperimentLog, timeout: float) -> None:
        """Give the mirror processes until ``timeout`` to forward everything and end; their
        final states go into ``log``."""
        deadline = time.monotonic() + timeout
        for mirror in self.processes:
            ended = mirror.wait(max(0.0, deadline - time.monotonic()))
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
            mirror.report(state)
            log.mirrors[mirror.name] = state

    def remove_files(self, files: RunFiles) -> None:
        """After the final save: the files of mirrors that ended (the document has their
        state); a mirror still running removes its own as it finishes."""
        if self.any_alive:
            return
        leftovers = [path for _, path in files.segments()]
        for mirror in self.processes:
            leftovers += files.mirror_files(mirror.name)
            if mirror.state().get("status") not in ("finished", "disabled"):
                leftovers.remove(files.mirror_log(mirror.name))  # kept: it says what failed
        for leftover in leftovers:
            with contextlib.suppress(OSError):
                leftover.unlink()


def remove_orphan_segments(files: RunFiles) -> list[Path]:
    """Segments no mirror process will read any more (none holds a mirror lock of the
    run): left by a mirror that gave up or was killed. Removed; returns them."""
    segments = files.segments()
    if not segments:
        return []
    for name in files.mirror_states():
        if mirror_running(files, name):
            return []
    removed = []
    for _, path in segments:
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def mirror_running(files: RunFiles, name: str) -> bool:
    """Whether a mirror process of ``name`` holds the run's mirror lock now."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(files.mirror_lock(name), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


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


def _snapshot(files: RunFiles, name: str) -> str | None:
    """The document as it is now, for a mirror starting later (a hard link: no copy)."""
    document = files.document
    if not document.exists():
        return None
    snapshot = files.mirror_start(name)
    with contextlib.suppress(FileNotFoundError):
        snapshot.unlink()
    try:
        os.link(document, snapshot)
    except OSError:  # a file system without hard links
        shutil.copyfile(document, snapshot)
    return str(snapshot)
