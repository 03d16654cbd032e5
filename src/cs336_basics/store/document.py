"""The run's document on disk: written atomically with its columnar cache, read from that
cache when it describes the very file, else parsed (:mod:`.codec` owns the format)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ..core.errors import LogFormatError
from ..core.history import Chunk, History, HistorySnapshot
from ..core.log import ExperimentLog
from .cache import CachedRun, CacheError, CacheWriter, Facts, read_cache, write_cache
from .codec import (
    chunk_piece,
    decode_log,
    document_meta,
    document_parts,
    document_to_log,
    dumps,
    head_bytes,
    tail_bytes,
)
from .fileio import atomic_file, atomic_write, fsync_dir, read_bytes_if_any, read_file
from .layout import RunFiles, temp_writer_pid
from .lock import pid_alive

logger = logging.getLogger("cs336_basics")


def now_iso() -> str:
    """The local time as the document writes it (``start_time``, ``end_time``)."""
    return datetime.now().isoformat()


def write_document(path: Path, log: ExperimentLog, save_id: int) -> None:
    """Write the run's document atomically (and its columnar cache), whole."""
    DocumentWriter(path).write(
        document_meta(log, save_id),
        log.metrics_history.snapshot(),
        log.superseded_history.snapshot(),
        system=log.system_history.snapshot(),
    )


def write_snapshot(
    path: Path,
    meta: dict[str, Any],
    metrics: tuple[Chunk, ...],
    superseded: tuple[Chunk, ...],
    pause: Callable[[], None] | None = None,
    system: tuple[Chunk, ...] = (),
) -> None:
    """Write a document from the histories' chunks, whole, then its cache (``pause``: see
    ``codec.document_parts``)."""
    parts = document_parts(meta, metrics, superseded, pause or _no_pause, system)
    written = atomic_write(path, parts)
    write_cache(path, written, meta, metrics, superseded, system)


_COPY_BLOCK = 1 << 24


def _copy_range(source: int, target: int, start: int, length: int) -> None:
    """Copy ``length`` bytes of ``source`` from ``start`` to the end of ``target``, in the
    kernel where it can (``copy_file_range``), else through a buffer."""
    done = 0
    copy = getattr(os, "copy_file_range", None)
    while done < length:
        count = min(_COPY_BLOCK, length - done)
        moved = 0
        if copy is not None:
            try:
                moved = copy(source, target, count, start + done)
            except OSError:
                copy = None
        if not moved:
            data = os.pread(source, count, start + done)
            if not data:
                raise OSError(f"the document ended {length - done} bytes early")
            moved = os.write(target, data)
        done += moved


class DocumentWriter:
    """Writes one run's document and cache save after save, in O(new rows).

    The chunks a ``History`` freezes never change and always encode to the same bytes,
    which follow one another in the document's ``metrics_history``. The writer remembers
    where the bytes of each frozen chunk it wrote end, the bytes before the first row (the
    head), and the file's identity. A save whose frozen chunks begin with those chunks, into
    a file nobody rewrote since:

    - with the same head (a save during the run): appends in place. The bytes after the kept
      chunks (the last rows, the other fields) are first copied into an undo record
      (``RunFiles.undo``, fsynced), then the file is cut there and the rest written and
      fsynced, then the undo record is removed. A crash in between leaves the undo record,
      from which readers read the old document (:func:`read_document`) and the next writer
      restores it (:func:`recover`); the bytes before the cut never change;
    - with another head (``finish()`` sets the summary): writes a new file, copying the
      kept chunks' bytes from the old one in the kernel, and renames it over the old one.

    Either way the document is byte for byte what writing it whole gives. Anything else is
    written whole (atomically). The cache follows (:class:`~.cache.CacheWriter`).

    The system-metrics samples come after the other fields, so they are written again by
    every save; the bytes of their frozen chunks are encoded once and kept (a week of
    samples every 10 s is 60k rows: a few MB written, nothing encoded again).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = RunFiles.of(path)
        self.cache = CacheWriter()
        self._identity: tuple[int, int, int, int] | None = None
        self._head = b""
        self._kept: list[tuple[Chunk, int]] = []  # frozen chunk, end of its bytes
        self._system: tuple[tuple[Chunk, ...], dict[int, bytes]] = ((), {})
        self._samples: tuple[Chunk, ...] = ()

    def write(
        self,
        meta: dict[str, Any],
        metrics: HistorySnapshot,
        superseded: HistorySnapshot,
        pause: Callable[[], None] | None = None,
        system: HistorySnapshot | None = None,
    ) -> None:
        """Write the document of ``meta`` and the histories (then its cache)."""
        pause = pause or _no_pause
        frozen = tuple(c for c in metrics.frozen if c.n)
        chunks = tuple(c for c in metrics.chunks() if c.n)
        rest = superseded.chunks()
        self._samples = tuple(c for c in system.chunks() if c.n) if system is not None else ()
        if system is not None:  # encoded bytes kept for the frozen chunks only
            kept = tuple(c for c in system.frozen if c.n)
            known = self._system[1]
            self._system = (kept, {id(c): known[id(c)] for c in kept if id(c) in known})
        head = head_bytes(meta)
        k = self._reusable(frozen)
        try:
            if k and head == self._head:
                written = self._append(k, chunks, len(frozen), meta, rest, pause)
            else:
                written = self._rewrite(k, head, chunks, len(frozen), meta, rest, pause)
        except BaseException:
            self._identity, self._kept = None, []
            raise
        self.cache.write(
            self.path, written, meta, chunks, rest, frozen=len(frozen), system=self._samples
        )

    def _sample_piece(self, chunk: Chunk, first: bool, pause: Callable[[], None]) -> bytes:
        """A chunk of system samples as the document holds it (a frozen one's bytes once)."""
        frozen, known = self._system
        body = known.get(id(chunk))
        if body is None:
            body = chunk_piece(chunk, True, pause)
            if any(c is chunk for c in frozen):
                known[id(chunk)] = body
        return body if first else b"," + body

    def _reusable(self, frozen: tuple[Chunk, ...]) -> int:
        if self._identity is None:
            return 0
        try:
            if _identity(os.stat(self.path)) != self._identity:
                return 0
        except OSError:
            return 0
        k = 0
        for (chunk, _), now in zip(self._kept, frozen, strict=False):
            if chunk is not now:
                break
            k += 1
        return k

    def _pieces(
        self,
        start: int,
        chunks: tuple[Chunk, ...],
        first: int,
        frozen: int,
        meta: dict[str, Any],
        superseded: tuple[Chunk, ...],
        pause: Callable[[], None],
    ) -> Iterator[bytes]:
        """The bytes after the kept chunks, noting where each newly frozen chunk ends
        (``start``: the offset they begin at)."""
        offset = start
        for index in range(first, len(chunks)):
            piece = chunk_piece(chunks[index], index == 0, pause)
            offset += len(piece)
            if index < frozen:
                self._kept.append((chunks[index], offset))
            yield piece
        yield tail_bytes(meta, superseded, pause, self._samples, self._sample_piece)

    def _append(
        self,
        k: int,
        chunks: tuple[Chunk, ...],
        frozen: int,
        meta: dict[str, Any],
        superseded: tuple[Chunk, ...],
        pause: Callable[[], None],
    ) -> os.stat_result:
        cut = self._kept[k - 1][1]
        undo = self.files.undo
        fd = os.open(self.path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            old = os.pread(fd, size - cut, cut)
            record = dumps({"offset": cut, "size": size}) + b"\n" + old
            atomic_write(undo, record)
            del self._kept[k:]
            os.ftruncate(fd, cut)
            os.lseek(fd, cut, os.SEEK_SET)
            for piece in self._pieces(cut, chunks, k, frozen, meta, superseded, pause):
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
            written = os.fstat(fd)
        finally:
            os.close(fd)
        undo.unlink()
        fsync_dir(self.path.parent)
        self._identity = _identity(written)
        return written

    def _rewrite(
        self,
        k: int,
        head: bytes,
        chunks: tuple[Chunk, ...],
        frozen: int,
        meta: dict[str, Any],
        superseded: tuple[Chunk, ...],
        pause: Callable[[], None],
    ) -> os.stat_result:
        old_head, kept = len(self._head), self._kept[:k]
        source = os.open(self.path, os.O_RDONLY) if k else None
        try:
            with atomic_file(self.path) as handle:
                handle.write(head)
                self._kept = []
                if source is not None:  # the kept chunks' bytes, from the old file
                    handle.flush()
                    shift = len(head) - old_head
                    _copy_range(source, handle.fileno(), old_head, kept[-1][1] - old_head)
                    handle.seek(0, os.SEEK_END)
                    self._kept = [(chunk, end + shift) for chunk, end in kept]
                start = handle.tell()
                for piece in self._pieces(start, chunks, k, frozen, meta, superseded, pause):
                    handle.write(piece)
        finally:
            if source is not None:
                os.close(source)
        written = os.stat(self.path)
        self._head, self._identity = head, _identity(written)
        return written


def _no_pause() -> None:
    pass


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def recover(files: RunFiles) -> None:
    """Restore the document from an undo record a save cut short left (a writer's job,
    with the run locked: at resume, push, a mirror's hand-over)."""
    record = read_bytes_if_any(files.undo)
    if record is None:
        return
    restored = _undone(read_bytes_if_any(files.document) or b"", record)
    if restored is not None:
        atomic_write(files.document, restored)
    files.undo.unlink()


def _undone(data: bytes, record: bytes) -> bytes | None:
    """The document as it was before the save an undo record belongs to (None: the record
    does not fit this file)."""
    line, _, old = record.partition(b"\n")
    try:
        header = orjson.loads(line)
        cut, size = int(header["offset"]), int(header["size"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if len(data) < cut or cut + len(old) != size:
        return None
    return data[:cut] + old


def remove_stale_temps(files: RunFiles) -> None:
    """Remove the temporary files of the run that a process killed mid-write left (those
    of a process still alive on this host are kept)."""
    host = socket.gethostname()
    for temp in files.temps():
        pid = temp_writer_pid(temp)
        if pid is not None and not pid_alive(pid, host):
            with contextlib.suppress(OSError):
                temp.unlink()


# ---------------------------------------------------------------------------------------
# Reading the document.


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
                metrics = _lazy(cached.metrics_facts, loader.metrics)
                superseded = _lazy(cached.superseded_facts, loader.superseded)
                system = _lazy(cached.system_facts, loader.system)
            else:
                chunks = cached.load()
                metrics, superseded, system = (History.from_chunks(c) for c in chunks)
            log.metrics_history, log.superseded_history = metrics, superseded
            log.system_history = system
            return log, int(cached.meta.get("save_id") or 0)
        except (LogFormatError, CacheError) as exc:
            logger.debug("ignoring the cache of %s: %s", document, exc)
    return _parse_document(document, write)


def _lazy(facts: Facts, load: Callable[[], list[Chunk]]) -> History:
    return History.lazy(facts.rows, facts.last, facts.diverged, load, facts.best_last)


def _parse_document(document: Path, write: bool) -> tuple[ExperimentLog, int]:
    undo_file = RunFiles.of(document).undo
    for attempt in range(4):
        data, before = read_file(document)
        undo = read_bytes_if_any(undo_file)
        if undo is not None:  # a save appending in place, or one cut short: the old one
            old = _undone(data, undo)
            if old is not None:
                data, write = old, False
        try:
            log, save_id = decode_log(data, str(document))
            break
        except LogFormatError:
            # A save appending in place may have finished between the two reads: read again.
            if attempt == 3 or os.stat(document).st_mtime_ns == before.st_mtime_ns:
                raise
            time.sleep(0.05)
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
        self._chunks: tuple[list[Chunk], list[Chunk], list[Chunk]] | None = None
        self._lock = threading.RLock()  # (re-entered by a signal handler that saves)

    def _load(self) -> tuple[list[Chunk], list[Chunk], list[Chunk]]:
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
                        list(log.system_history.snapshot().chunks()),
                    )
            return self._chunks

    def metrics(self) -> list[Chunk]:
        return self._load()[0]

    def superseded(self) -> list[Chunk]:
        return self._load()[1]

    def system(self) -> list[Chunk]:
        return self._load()[2]


def _cache_after_read(
    document: Path, before: os.stat_result, log: ExperimentLog, save_id: int
) -> None:
    """Cache a document just parsed, unless it changed meanwhile (then the next reader)."""
    try:
        now = os.stat(document)
    except OSError:
        return
    if (now.st_size, now.st_mtime_ns, now.st_ino, now.st_ctime_ns) != (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
        before.st_ctime_ns,
    ):
        return
    write_cache(
        document,
        now,
        document_meta(log, save_id),
        log.metrics_history.snapshot().chunks(),
        log.superseded_history.snapshot().chunks(),
        log.system_history.snapshot().chunks(),
    )
