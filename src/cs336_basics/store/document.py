"""The run's document on disk: written atomically with its columnar cache, read from that
cache when it describes the very file, else parsed (:mod:`.codec` owns the format)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import LogFormatError
from ..core.history import Chunk, History
from ..core.log import ExperimentLog
from .cache import CachedRun, CacheError, Facts, read_cache, write_cache
from .codec import decode_log, document_meta, document_parts, document_to_log
from .fileio import atomic_write, read_file
from .layout import RunFiles, temp_writer_pid
from .lock import pid_alive

logger = logging.getLogger("cs336_basics")


def now_iso() -> str:
    """The local time as the document writes it (``start_time``, ``end_time``)."""
    return datetime.now().isoformat()


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
            else:
                chunks = cached.load()
                metrics, superseded = History.from_chunks(chunks[0]), History.from_chunks(chunks[1])
            log.metrics_history, log.superseded_history = metrics, superseded
            return log, int(cached.meta.get("save_id") or 0)
        except (LogFormatError, CacheError) as exc:
            logger.debug("ignoring the cache of %s: %s", document, exc)
    return _parse_document(document, write)


def _lazy(facts: Facts, load: Callable[[], list[Chunk]]) -> History:
    return History.lazy(facts.rows, facts.last, facts.diverged, load, facts.best_last)


def _parse_document(document: Path, write: bool) -> tuple[ExperimentLog, int]:
    data, before = read_file(document)
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
    )
