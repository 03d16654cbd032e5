"""One writer per run: the run lock, and whether a process that wrote a file still runs."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from ..core.errors import RunInUseError
from .layout import RunFiles

try:
    import fcntl
except ImportError:  # not on Windows: runs are not locked there
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("cs336_basics")


def pid_alive(pid: Any, host: Any) -> bool:
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


class RunLock:
    """The lock of one run, held by whoever writes it (``.<stem>.lock``, ``flock``): the
    tracker from ``start()`` to ``finish()``/``close()``, ``push`` while it uploads.

    The kernel drops the lock when the holder dies, SIGKILL included, so a crashed run can
    be resumed at once, while a second writer of a live run (another process, or another
    tracker in this one) gets :class:`RunInUseError`. The file holds the holder's pid and
    host for that message. Locks are advisory and local: on a network file system shared by
    several hosts they may not hold (see the README). Without ``fcntl`` (Windows) nothing is
    locked.
    """

    def __init__(self, fd: int | None, files: RunFiles) -> None:
        self._fd = fd
        self.files = files

    @property
    def held(self) -> bool:
        return self._fd is not None

    @classmethod
    def acquire(cls, files: RunFiles, purpose: str = "tracker") -> RunLock:
        """Take the run's lock; :class:`RunInUseError` naming the holder when it is taken."""
        path = files.lock
        if fcntl is None:
            return cls(None, files)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise RunInUseError(
                    f"run {files.stem} in {files.folder} is being written by another live "
                    f"process ({holder}); wait until it finishes or closes (a crashed one "
                    "lets go by itself)"
                ) from exc
            except OSError as exc:  # a file system without locks (some network mounts)
                os.close(fd)
                logger.warning(
                    "cannot lock run %s (%s); going on unlocked: do not write it twice at once",
                    files.stem,
                    exc,
                )
                return cls(None, files)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:  # else the last holder removed the file as we opened it: go again
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{purpose}, pid {os.getpid()} on {socket.gethostname()}".encode())
        return cls(fd, files)

    def release(self) -> None:
        """Let go of the run (the lock file is removed first, while still held)."""
        if self._fd is None:
            return
        try:
            self.files.lock.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
