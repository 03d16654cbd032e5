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
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from . import journal as journal_format
from .cache import CachedRun, CacheError, read_cache, write_cache
from .codec import decode_log, document_meta, document_parts, document_to_log, dumps
from .errors import LogFormatError, RunInUseError
from .history import Chunk, History
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


def atomic_write(path: Path, data: bytes | Iterable[bytes]) -> os.stat_result:
    """Write ``data`` (bytes, or pieces of them written one after another) to ``path`` so
    that a crash leaves either the old or the new file; returns the new file's stat."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                for piece in data:
                    handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
            written = os.fstat(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return written


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


def load_run(
    path: Path, on_problem: ProblemHandler = _log_problem, cache: bool = True
) -> tuple[ExperimentLog, int]:
    """Load a run from its ``.json`` or ``.jsonl`` path; returns the log and its save_id
    (the newest save its records reach: a document written from this log takes the next).

    The document (from its columnar cache when valid; with ``cache`` a missing one is
    written), then its journals, then the state recorded by any mirror process (which may
    be newer than all of them: a mirror goes on after a crash, or after ``finish()``).
    """
    path = Path(path)
    log, save_id = _load_files(path, on_problem, cache)
    document = path.with_suffix(".json")
    for state_file in document.parent.glob(f".{document.stem}.*{_MIRROR_STATE_SUFFIX}"):
        name = state_file.name[len(document.stem) + 2 : -len(_MIRROR_STATE_SUFFIX)]
        state = read_mirror_state(state_file)
        if state:
            log.mirrors[name] = {**(log.mirrors.get(name) or {}), **state}
    return log, save_id


def _load_files(path: Path, on_problem: ProblemHandler, cache: bool) -> tuple[ExperimentLog, int]:
    if path.suffix == JOURNAL_SUFFIX:
        document, journal = path.with_suffix(".json"), path
    else:
        document, journal = path, path.with_suffix(JOURNAL_SUFFIX)
    # The journals are read before the document: a background save may land a newer
    # document and remove the kept journals it holds at any moment, and a document read
    # last is never older than what the journals read first continue (see journal_chain).
    parts = read_journal_files(journal)
    log: ExperimentLog | None = None
    save_id: int | None = None
    if document.exists():
        log, save_id = read_document(document, write=cache, lazy=not parts)
        if log.status == "finished":
            return log, save_id
    chain = journal_chain(parts, save_id)
    if not chain:
        if log is None:
            raise FileNotFoundError(f"no experiment log at {path}")
        if log.status == "running":
            log.status = "unfinished"
        return log, save_id or 0
    expected = save_id
    reached = save_id or 0  # the newest save the records reach (a rewrite goes past it)
    for base, part, data in chain:
        if log is not None and base != (expected or 0):
            on_problem(
                f"{part}: continues save {base} but the run reached save {expected or 0}; "
                "the records between are missing (skipped)"
            )
            break
        log, problems = journal_format.replay(part, log, expected, pid_alive, data)
        for problem in problems:
            on_problem(problem)
        expected = base + 1
        reached = max(reached, base)
    if log is None:
        raise LogFormatError(f"{journal}: empty journal")
    if log.source is None or not document.exists():
        log.source = str(document if document.exists() else journal)
    if not log.run_id:
        log.run_id = document.stem
    return log, reached


JournalFile = tuple[int, Path, bytes]


def read_journal_files(journal: Path) -> list[JournalFile]:
    """``(base, path, bytes)`` of the run's kept journals, then its live journal, read now.

    The live journal is read first: a rotation right after turns it into a kept journal
    that the listing then finds, whole (and preferred: see :func:`journal_chain`); a kept
    journal removed before it is read was held by a document on disk by then."""
    try:
        live: bytes | None = journal.read_bytes()
    except FileNotFoundError:
        live = None
    found = read_kept_journals(journal)
    if live is None:
        return found
    header = journal_format.header_of(live)
    if header is not None:
        found.append((int(header.get("base") or 0), journal, live))
    elif live.strip() and not found:
        found.append((-1, journal, live))  # no readable header: the replay reports it
    return found


def read_kept_journals(journal: Path) -> list[JournalFile]:
    """``(base, path, bytes)`` of the run's kept journals, oldest first (one removed before
    it is read was held by a document on disk by then)."""
    found: list[JournalFile] = []
    for base, kept in journal_format.kept_journals(journal):
        try:
            found.append((base, kept, kept.read_bytes()))
        except FileNotFoundError:
            continue
    return found


def journal_chain(parts: list[JournalFile], save_id: int | None) -> list[JournalFile]:
    """The journal files that continue a document of ``save_id`` (None: no document), in
    order: the kept journals of saves still being written (or cut short by a crash), then
    the live journal. A journal the document holds is left out; of a kept and a live
    journal with one base (rotated while being read), the kept one, complete, is used."""
    floor = save_id or 0
    chain: dict[int, JournalFile] = {}
    for base, path, data in parts:
        if base == -1:
            chain[floor] = (floor, path, data)
        elif base >= floor:
            chain.setdefault(base, (base, path, data))
    return [chain[b] for b in sorted(chain)]


def read_document(
    document: Path, write: bool = True, lazy: bool = True
) -> tuple[ExperimentLog, int]:
    """Read a run's document, from its columnar cache when that describes this very file;
    otherwise parse it (and, with ``write``, leave a cache for the next reader).

    ``lazy``: the histories' columns are read on first use (a listing reads headers only;
    should the cache be rewritten by then, they come from the document as it is then).
    Not lazy: read now, from the same file as the rest, as journals replayed on top need.
    """
    cached = read_cache(document)
    if cached is not None:
        try:
            log = document_to_log({**cached.meta, "metrics_history": []}, str(document))
            if lazy:
                loader = _CacheLoader(cached, document)
                metrics = History.lazy(*cached.metrics_facts, loader.metrics)
                superseded = History.lazy(*cached.superseded_facts, loader.superseded)
            else:
                chunks = cached.load()
                metrics, superseded = History.from_chunks(chunks[0]), History.from_chunks(chunks[1])
            log.metrics_history, log.superseded_history = metrics, superseded
            return log, int(cached.meta.get("save_id") or 0)
        except (LogFormatError, CacheError) as exc:
            logger.debug("ignoring the cache of %s: %s", document, exc)
    return _parse_document(document, write)


def _parse_document(document: Path, write: bool) -> tuple[ExperimentLog, int]:
    try:
        with open(document, "rb") as handle:
            before = os.fstat(handle.fileno())
            data = handle.read()
    except OSError as exc:
        raise LogFormatError(f"{document}: cannot read ({exc})") from exc
    log, save_id = decode_log(data, str(document))
    del data
    if write:
        _cache_after_read(document, before, log, save_id)
    return log, save_id


class _CacheLoader:
    """Reads a cache's columns once, for both histories; when they cannot be used (the
    cache was rewritten meanwhile, or fails its checks), the document is parsed instead."""

    def __init__(self, cached: CachedRun, document: Path) -> None:
        self.cached = cached
        self.document = document
        self._chunks: tuple[list[Chunk], list[Chunk]] | None = None
        self._lock = threading.RLock()  # (re-entered by a signal handler that saves)

    def _load(self) -> tuple[list[Chunk], list[Chunk]]:
        with self._lock:
            if self._chunks is None:
                try:
                    self._chunks = self.cached.load()
                except CacheError as exc:
                    logger.debug("ignoring the cache of %s: %s", self.document, exc)
                    log, save_id = _parse_document(self.document, write=False)
                    if save_id != self.cached.meta.get("save_id"):
                        raise LogFormatError(
                            f"{self.document}: the run changed on disk since it was loaded "
                            f"(save {self.cached.meta.get('save_id')}, now {save_id}); load "
                            "it again"
                        ) from exc
                    self._chunks = (
                        list(log.metrics_history.snapshot().chunks()),
                        list(log.superseded_history.snapshot().chunks()),
                    )
            return self._chunks

    def metrics(self) -> list[Chunk]:
        return self._load()[0]

    def superseded(self) -> list[Chunk]:
        return self._load()[1]


def _cache_after_read(
    document: Path, before: os.stat_result, log: ExperimentLog, save_id: int
) -> None:
    """Cache a document just parsed, unless it changed meanwhile (then the next reader)."""
    try:
        now = os.stat(document)
    except OSError:
        return
    if (now.st_size, now.st_mtime_ns, now.st_ino) != (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    ):
        return
    write_cache(
        document,
        now,
        document_meta(log, save_id),
        log.metrics_history.snapshot().chunks(),
        log.superseded_history.snapshot().chunks(),
    )


def load_experiment_log(path: Path | str) -> ExperimentLog:
    """Load a run saved by ``save()`` or recovered from its journal (marked unfinished)."""
    return load_run(Path(path))[0]


def write_document(path: Path, log: ExperimentLog, save_id: int) -> None:
    """Write the run's document atomically (and its columnar cache)."""
    write_snapshot(
        path,
        document_meta(log, save_id),
        log.metrics_history.snapshot().chunks(),
        log.superseded_history.snapshot().chunks(),
    )


def write_snapshot(
    path: Path,
    meta: dict[str, Any],
    metrics: tuple[Chunk, ...],
    superseded: tuple[Chunk, ...],
    pause: Callable[[], None] | None = None,
) -> None:
    """Write a document from the histories' chunks, then its cache (``pause``: see
    ``codec.document_parts``)."""
    parts = document_parts(meta, metrics, superseded, *([pause] if pause else []))
    written = atomic_write(path, parts)
    write_cache(path, written, meta, metrics, superseded)


_TEMP = re.compile(r"\.tmp-(\d+)(?:-\d+)?$")


def remove_stale_temps(document: Path) -> None:
    """Remove the temporary files of the run's document, cache and journal that a process
    killed mid-write left (those of a process still alive on this host are kept)."""
    stem = document.stem
    for pattern in (f".{document.name}.tmp-*", f".{stem}.*.tmp-*", f".{stem}.jsonl.tmp-*"):
        for temp in document.parent.glob(pattern):
            found = _TEMP.search(temp.name)
            if found and not pid_alive(int(found.group(1)), socket.gethostname()):
                with contextlib.suppress(OSError):
                    temp.unlink()


def now_iso() -> str:
    return datetime.now().isoformat()
