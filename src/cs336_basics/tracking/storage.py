"""Files on disk: names, atomic saves, the run lock, loading and recovery.

A run named ``NAME`` started at ``TS`` owns two files in ``log_dir`` with one stem,
``experiment_<safe NAME>_<TS>[_<n>]``:

- ``<stem>.json``: the guide's document, replaced atomically by every ``save()``;
- ``<stem>.jsonl``: the journal, the records logged since that document was written
  (its format, writer and replay are in :mod:`.journal`). Its header names the ``save_id``
  of the document it continues (``base``); a journal whose base is not the document's is
  stale (the document already holds its records);
- ``.<stem>.lock``: held (``flock``) by the one tracker writing the run, so a second
  tracker on this host cannot resume it at the same time.

Loading a run reads the document, then replays a matching journal on top; a run that died
before its first save is rebuilt from the journal alone. A torn last line is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from . import journal as journal_format
from .codec import decode_log, dumps, encode_log
from .errors import LogFormatError, RunInUseError
from .records import ExperimentLog

try:
    import fcntl
except ImportError:  # not on Windows: runs are not locked there
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("cs336_basics")
JOURNAL_SUFFIX = journal_format.SUFFIX
_MIRROR_STATE_SUFFIX = "-mirror.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
MAX_NAME_CHARS = 80


def safe_name(name: str) -> str:
    """A file-name-safe rendering of an experiment name (never a path, never empty)."""
    text = _DOTS.sub("_", _UNSAFE.sub("_", name)).strip("._-")[:MAX_NAME_CHARS].strip("._-")
    return text or "run"


def inside(directory: Path, name: str) -> Path:
    """``directory / name``, refusing any name that would land outside ``directory``."""
    target = directory / name
    if Path(name).name != name or name in ("", ".", "..") or target.parent != directory:
        raise ValueError(f"file name {name!r}: expected a plain name inside {directory}")
    return target


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


class RunLock:
    """The lock of one run, held by the tracker writing it (``.<stem>.lock``, ``flock``).

    The kernel drops the lock when the holder dies, SIGKILL included, so a crashed run can
    be resumed at once, while a second tracker of a live run (another process, or another
    tracker in this one) gets :class:`RunInUseError`. The file holds the holder's pid and
    host for that message. Locks are advisory and local: on a network file system shared by
    several hosts they may not hold (see the README). Without ``fcntl`` (Windows) nothing is
    locked.
    """

    def __init__(self, fd: int | None, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, log_dir: Path, stem: str) -> RunLock:
        path = log_dir / f".{stem}.lock"
        if fcntl is None:
            return cls(None, path)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise RunInUseError(
                    f"run {stem} in {log_dir} is being written by another live tracker "
                    f"({holder}); finish or close that one first (a crashed one lets go by "
                    "itself)"
                ) from exc
            except OSError as exc:  # a file system without locks (some network mounts)
                os.close(fd)
                logger.warning(
                    "cannot lock run %s (%s); going on unlocked: do not resume it twice at once",
                    stem,
                    exc,
                )
                return cls(None, path)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:  # else the last holder removed the file as we opened it: go again
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        return cls(fd, path)

    def release(self) -> None:
        """Let go of the run (the lock file is removed first, while still held)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


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


def mirror_state_path(document: Path, name: str) -> Path:
    """Where a sink running in its own process records its state and progress."""
    return document.with_name(f".{document.stem}.{name}{_MIRROR_STATE_SUFFIX}")


def read_mirror_state(path: Path) -> dict[str, Any]:
    """The last state a mirror recorded, or ``{}`` (none yet, or unreadable)."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_mirror_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, dumps(state))


# ---------------------------------------------------------------------------------------
# Reading.


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


ProblemHandler = Callable[[str], None]


def _log_problem(problem: str) -> None:
    logger.warning("%s", problem)


def load_run(path: Path, on_problem: ProblemHandler = _log_problem) -> tuple[ExperimentLog, int]:
    """Load a run from its ``.json`` or ``.jsonl`` path; returns the log and its save_id.

    The document, then its journal, then the state recorded by any mirror process (which
    may be newer than both: a mirror goes on after a crash, or after ``finish()``).
    """
    path = Path(path)
    log, save_id = _load_files(path, on_problem)
    document = path.with_suffix(".json")
    for state_file in document.parent.glob(f".{document.stem}.*{_MIRROR_STATE_SUFFIX}"):
        name = state_file.name[len(document.stem) + 2 : -len(_MIRROR_STATE_SUFFIX)]
        state = read_mirror_state(state_file)
        if state:
            log.mirrors[name] = {**(log.mirrors.get(name) or {}), **state}
    return log, save_id


def _load_files(path: Path, on_problem: ProblemHandler) -> tuple[ExperimentLog, int]:
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
            raise LogFormatError(f"{document}: cannot read ({exc})") from exc
        log, save_id = decode_log(data, str(document))
        if log.status == "finished" or not journal.exists():
            if log.status == "running":
                log.status = "unfinished"
            return log, save_id
    elif not journal.exists():
        raise FileNotFoundError(f"no experiment log at {path}")
    log, problems = journal_format.replay(journal, log, save_id, pid_alive)
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
