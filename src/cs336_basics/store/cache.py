"""The columnar cache beside a run's document: ``.<stem>.columns``.

This module owns the cache's format. The JSON document stays the source of truth; the
cache is derived from it, written after each save (and by the first load of a document
that has none), and used only while it provably describes that very file: it records
the document's ``save_id``, size, modification and change times (ns) and inode, and a
cache whose record differs from the document on disk, or that is torn, foreign or from
another version, is ignored (and rebuilt by whoever may write there).

Layout (v3), all little-endian::

    MAGIC (16 bytes)
    data: the columns' typed arrays, each at an 8-byte aligned offset
    header (JSON)
    trailer: data size (8), header length (8), header CRC-32 (4), data CRC-32 (4), END (8)

The header holds the document without its histories (``meta``: the same JSON values), for
each history (metrics, superseded, system samples: a cache written before the last had
none, read as empty) its facts (row count, last row, first diverged row, best and last value of
each loss: what a listing shows) and its chunks: row count and, per column, its kind
(``range``: start and step; ``array``: offset, length and typecode of the values, and of
the row index when only some rows have a value; ``list``: the values inline). Loading
reads the trailer and the header only; the data section is read when a history is first
used (a listing of 200 runs reads 200 headers), checked against its CRC and the header's
shapes, and handed out as views of one buffer, no copy. No file stays open.

Data comes first so that a save appends: :class:`CacheWriter` keeps what it wrote, and a
save whose frozen chunks begin with those of the last one cuts the file after their arrays
and writes only the rest (the arrays of new chunks, the header, the trailer), so a save
costs O(new rows). A write cut short leaves a file whose trailer does not check out:
ignored, and rewritten whole by the next save.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass
from operator import lt
from pathlib import Path
from typing import Any

import orjson

from ..core import env
from ..core.history import Chunk, Column, History
from ..core.row import LOSS_FIELDS, ROW_FIELDS, MetricsSnapshot
from ..core.values import NonFinite, from_marker
from .codec import dumps, row_from_dict, unmark
from .fileio import atomic_file, open_regular
from .layout import RunFiles

logger = logging.getLogger("cs336_basics")

MAGIC = b"CS336-COLUMNS\x00v3"
END = b"CS336END"
_TRAILER = struct.Struct("<QQII")  # data size, header length, header CRC-32, data CRC-32
_TRAILER_SIZE = _TRAILER.size + len(END)
_ALIGN = 8
_LITTLE = sys.byteorder == "little"


def cache_path(document: Path) -> Path:
    """Where the cache of ``document`` lives (a hidden file beside it)."""
    return RunFiles.of(document).cache


def document_key(st: os.stat_result, save_id: int) -> dict[str, int]:
    """What ties a cache to one document file (its stat) and save: size, modification
    time, inode and change time (which no one can set: an in-place rewrite that keeps size
    and modification time, ``cp -p``, ``touch -r``, still changes it)."""
    return {
        "save_id": save_id,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ino": st.st_ino,
        "ctime_ns": st.st_ctime_ns,
    }


# ---------------------------------------------------------------------------------------
# Writing.


class _Data:
    """The data section being laid out: arrays to write, at aligned offsets (relative to
    the section's start), and the CRC-32 of everything laid out so far."""

    def __init__(self, size: int = 0, crc: int = 0) -> None:
        self.parts: list[Any] = []
        self.size = size
        self.crc = crc

    def add(self, values: Any) -> list[Any]:
        view = memoryview(values).cast("B")
        if not _LITTLE and isinstance(values, array):  # the file is little-endian
            swapped = array(values.typecode, values)
            swapped.byteswap()
            view = memoryview(swapped).cast("B")
        offset = self.size
        self._put(view)
        pad = -self.size % _ALIGN
        if pad:
            self._put(b"\x00" * pad)
        return [
            offset,
            len(values),
            values.typecode if isinstance(values, array) else values.format,
        ]

    def _put(self, part: Any) -> None:
        self.parts.append(part)
        self.size += len(part)
        self.crc = zlib.crc32(part, self.crc)


def _column_spec(column: Column | None, data: _Data) -> dict[str, Any] | None:
    if column is None:
        return None
    if column.kind == "range":
        return {"kind": "range", "start": column.start, "step": column.step}
    spec: dict[str, Any] = {"kind": column.kind}
    if column.kind == "list":
        spec["values"] = list(column.values)
    else:
        spec["values"] = data.add(column.values)
        spec["nonfinite"] = column.nonfinite
    if column.index is not None:
        spec["index"] = data.add(column.index)
    return spec


def _chunk_spec(chunk: Chunk, data: _Data) -> dict[str, Any]:
    return {
        "n": chunk.n,
        "fields": [_column_spec(c, data) for c in chunk.fields],
        "extras": {name: _column_spec(c, data) for name, c in chunk.extras.items()},
    }


class _ChunkFacts:
    """The facts of one chunk (chunks never change: computed once per chunk)."""

    __slots__ = ("n", "diverged", "best_last")

    def __init__(self, chunk: Chunk) -> None:
        self.n = chunk.n
        j = chunk.first_nonfinite(LOSS_FIELDS)
        self.diverged = chunk.row(j) if j is not None else None
        history = History.from_chunks([chunk])
        self.best_last = {name: history.best_last(name) for name in LOSS_FIELDS}


def _facts(chunks: tuple[Chunk, ...], known: dict[int, _ChunkFacts]) -> dict[str, Any]:
    """Row count, last row, first diverged row, and the best and last value of each loss
    of a history (what a listing reads), from the facts of its chunks."""
    rows = 0
    diverged = None
    best: dict[str, float | None] = dict.fromkeys(LOSS_FIELDS)
    last: dict[str, float | None] = dict.fromkeys(LOSS_FIELDS)
    for chunk in chunks:
        facts = known.get(id(chunk))
        if facts is None:
            facts = _ChunkFacts(chunk)
        rows += facts.n
        if diverged is None and facts.diverged is not None:
            diverged = facts.diverged
        for name, (chunk_best, chunk_last) in facts.best_last.items():
            so_far = best[name]
            if chunk_best is not None and (so_far is None or chunk_best < so_far):
                best[name] = chunk_best
            if chunk_last is not None:
                last[name] = chunk_last
    last_row = chunks[-1].row(chunks[-1].n - 1) if chunks else None
    return {
        "n": rows,
        "last": last_row.to_dict() if last_row else None,
        "diverged": diverged.to_dict() if diverged else None,
        "best_last": {name: [best[name], last[name]] for name in LOSS_FIELDS},
    }


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class CacheWriter:
    """Writes the cache of one document, save after save, appending what is new.

    It remembers, for the frozen chunks of the metrics history it wrote last (the chunks a
    ``History`` freezes never change), their specs, where their arrays end and the data
    CRC there, and the cache file's identity. A save whose frozen chunks begin with the same
    chunk objects, into a file nobody else rewrote since, keeps that part of the file.
    """

    def __init__(self) -> None:
        self._identity: tuple[int, int, int, int] | None = None
        self._kept: list[tuple[Chunk, dict[str, Any], int, int]] = []  # chunk, spec, end, crc
        self._facts: dict[int, _ChunkFacts] = {}

    def write(
        self,
        document: Path,
        written: os.stat_result,
        meta: dict[str, Any],
        metrics: tuple[Chunk, ...],
        superseded: tuple[Chunk, ...],
        frozen: int = 0,
        system: tuple[Chunk, ...] = (),
    ) -> None:
        """Write the cache of ``document``, whose file (``written``: its stat) was written
        from ``meta`` and these chunks; the first ``frozen`` metrics chunks are frozen.

        Best effort: an error is logged at debug level and the cache is simply missing or
        ignored (the next load reads the document). Not fsynced: a cache torn by a power
        cut fails its checks and is ignored.
        """
        if env.caches_off():
            return
        path = cache_path(document)
        try:
            self._write(path, written, meta, metrics, superseded, frozen, system)
        except (OSError, TypeError, ValueError) as exc:
            logger.debug("could not write the cache %s: %s", path, exc)
            self._identity, self._kept = None, []

    def _reusable(self, path: Path, metrics: tuple[Chunk, ...], frozen: int) -> int:
        """How many leading frozen chunks the file on disk holds already."""
        if self._identity is None:
            return 0
        try:
            if _identity(os.stat(path)) != self._identity:
                return 0
        except OSError:
            return 0
        k = 0
        for (chunk, *_), now in zip(self._kept, metrics[:frozen], strict=False):
            if chunk is not now:
                break
            k += 1
        return k

    def _write(
        self,
        path: Path,
        written: os.stat_result,
        meta: dict[str, Any],
        metrics: tuple[Chunk, ...],
        superseded: tuple[Chunk, ...],
        frozen: int,
        system: tuple[Chunk, ...] = (),
    ) -> None:
        metrics = tuple(c for c in metrics if c.n)
        superseded = tuple(c for c in superseded if c.n)
        system = tuple(c for c in system if c.n)
        frozen = min(frozen, len(metrics))
        k = self._reusable(path, metrics, frozen)
        kept = self._kept[:k]
        end, crc = (kept[-1][2], kept[-1][3]) if kept else (0, 0)
        data = _Data(end, crc)
        specs = [spec for _, spec, _, _ in kept]
        for index, chunk in enumerate(metrics[k:], start=k):
            specs.append(_chunk_spec(chunk, data))
            if index < frozen:
                kept.append((chunk, specs[-1], data.size, data.crc))
        superseded_specs = [_chunk_spec(chunk, data) for chunk in superseded]
        system_specs = [_chunk_spec(chunk, data) for chunk in system]
        live = {id(chunk) for chunk in (*metrics, *superseded)}
        self._facts = {i: f for i, f in self._facts.items() if i in live}
        for chunk in (*metrics[:frozen],):
            if id(chunk) not in self._facts:
                self._facts[id(chunk)] = _ChunkFacts(chunk)
        header = dumps(
            {
                "key": document_key(written, int(meta.get("save_id") or 0)),
                "meta": meta,
                "facts": {
                    "metrics_history": _facts(metrics, self._facts),
                    "superseded_history": _facts(superseded, self._facts),
                    "system_history": _facts(system, {}),
                },
                "metrics_history": specs,
                "superseded_history": superseded_specs,
                "system_history": system_specs,
                "data_size": data.size,
            }
        )
        trailer = _TRAILER.pack(data.size, len(header), zlib.crc32(header), data.crc) + END
        if k:  # append: the file holds MAGIC and the kept chunks' arrays already
            with open(path, "r+b") as handle:
                handle.truncate(len(MAGIC) + end)
                handle.seek(len(MAGIC) + end)
                for part in data.parts:
                    handle.write(part)
                handle.write(header + trailer)
                handle.flush()
                st = os.fstat(handle.fileno())
        else:
            with atomic_file(path, durable=False) as handle:  # (derived: no fsync)
                handle.write(MAGIC)
                for part in data.parts:
                    handle.write(part)
                handle.write(header + trailer)
            st = os.stat(path)
        self._identity, self._kept = _identity(st), kept


def write_cache(
    document: Path,
    written: os.stat_result,
    meta: dict[str, Any],
    metrics: tuple[Chunk, ...],
    superseded: tuple[Chunk, ...],
    system: tuple[Chunk, ...] = (),
) -> None:
    """Write the cache of ``document`` whole (see :meth:`CacheWriter.write`)."""
    CacheWriter().write(document, written, meta, metrics, superseded, system=system)


# ---------------------------------------------------------------------------------------
# Reading.


class CacheError(ValueError):
    """A cache that cannot be used (the caller reads the document instead)."""


class _Section:
    """The data section of a cache, read into one buffer; columns are views into it."""

    def __init__(self, buffer: bytes) -> None:
        self.view = memoryview(buffer)
        self.size = len(buffer)

    def get(self, spec: Any, count: int | None = None) -> Any:
        offset, length, typecode = spec
        if typecode not in ("d", "q") or type(offset) is not int or type(length) is not int:
            raise CacheError(f"bad array spec {spec!r:.80}")
        end = offset + length * 8
        if not (0 <= offset <= end <= self.size) or offset % _ALIGN:
            raise CacheError("an array outside the data section")
        if count is not None and length != count:
            raise CacheError(f"an array of {length} values where {count} were expected")
        values = self.view[offset:end].cast(typecode)
        if not _LITTLE:
            swapped = array(typecode, values)
            swapped.byteswap()
            return memoryview(swapped)
        return values


_NUMBERS = frozenset({int, float, NonFinite, type(None)})


def _column(spec: Any, data: _Section, n: int) -> Column | None:
    if spec is None:
        return None
    kind = spec["kind"]
    if kind == "range":
        start, step = spec["start"], spec["step"]
        if type(start) is not int or type(step) is not int:
            raise CacheError("a range column of non-integers")
        return Column("range", start=start, step=step)
    index = None
    if spec.get("index") is not None:
        index = data.get(spec["index"])
        if len(index) > n or (len(index) and (index[0] < 0 or index[-1] >= n)):
            raise CacheError("a row index outside its chunk")
        if not all(map(lt, index, index[1:])):
            raise CacheError("a row index out of order")
    count = n if index is None else len(index)
    if kind == "list":
        values: Any = [unmark(v) for v in spec["values"]]
        if len(values) != count or not set(map(type, values)) <= _NUMBERS:
            raise CacheError("a list column of the wrong length or type")
        return Column(kind, values, index, nonfinite=True)
    if kind == "array":
        values = data.get(spec["values"], count)
        return Column(kind, values, index, nonfinite=bool(spec.get("nonfinite")))
    raise CacheError(f"column kind {kind!r:.40}")


def _chunks(specs: Any, data: _Section, rows: int) -> list[Chunk]:
    chunks = []
    for spec in specs:
        n = spec["n"]
        if type(n) is not int or n <= 0:
            raise CacheError(f"a chunk of {n!r:.40} rows")
        fields = [_column(c, data, n) for c in spec["fields"]]
        if len(fields) != len(ROW_FIELDS) or fields[0] is None or fields[1] is None:
            raise CacheError("a chunk without its row fields")
        extras = {str(k): _column(c, data, n) for k, c in spec["extras"].items()}
        chunks.append(Chunk(n, fields, {k: c for k, c in extras.items() if c is not None}))
    if sum(chunk.n for chunk in chunks) != rows:
        raise CacheError("chunks that do not add up to the history")
    return chunks


BestLast = dict[str, tuple[float | None, float | None]]


@dataclass(frozen=True)
class Facts:
    """What a cache's header says of one history without its columns: rows, last row,
    first diverged row, and the best and last value of each loss (older caches: none)."""

    rows: int
    last: MetricsSnapshot | None
    diverged: MetricsSnapshot | None
    best_last: BestLast


_NUMBER_OR_NONE = frozenset({int, float, NonFinite, type(None)})


def _read_best_last(value: Any) -> BestLast:
    if not isinstance(value, dict):
        return {}
    out: BestLast = {}
    for name, pair in value.items():
        if not isinstance(pair, list) or len(pair) != 2:
            raise CacheError(f"best_last.{name}: {pair!r:.40}")
        best, last = (from_marker(v) for v in pair)
        if type(best) not in _NUMBER_OR_NONE or type(last) not in _NUMBER_OR_NONE:
            raise CacheError(f"best_last.{name}: {pair!r:.40}")
        out[str(name)] = (best, last)
    return out


def _read_facts(header: dict[str, Any], history: str, path: Path) -> Facts:
    """The facts of ``history`` as the header records them."""
    facts = header["facts"][history]
    rows = facts["n"]
    if type(rows) is not int or rows < 0:
        raise CacheError(f"{history}: {rows!r:.40} rows")
    last = facts.get("last")
    diverged = facts.get("diverged")
    return Facts(
        rows,
        row_from_dict(last, f"{path}: last row") if last is not None else None,
        row_from_dict(diverged, f"{path}: diverged row") if diverged is not None else None,
        _read_best_last(facts.get("best_last")),
    )


@dataclass
class CachedRun:
    """A cache's header, read; :meth:`load` reads and checks the columns."""

    path: Path
    identity: tuple[int, int, int]  # the cache file's inode, size, mtime_ns when read
    header: dict[str, Any]
    data_offset: int
    data_crc: int
    metrics_facts: Facts
    superseded_facts: Facts
    system_facts: Facts

    @property
    def meta(self) -> dict[str, Any]:
        return self.header["meta"]

    def load(self) -> tuple[list[Chunk], list[Chunk], list[Chunk]]:
        """The three histories' chunks (metrics, superseded, system samples);
        ``CacheError`` when the file changed since its header was read, or its data fail
        their CRC or their shapes."""
        try:
            with open(self.path, "rb") as handle:
                st = os.fstat(handle.fileno())
                if (st.st_ino, st.st_size, st.st_mtime_ns) != self.identity:
                    raise CacheError("rewritten since its header was read")
                handle.seek(self.data_offset)
                buffer = handle.read(int(self.header["data_size"]))
        except OSError as exc:
            raise CacheError(f"cannot read it ({exc})") from exc
        if len(buffer) != self.header["data_size"] or zlib.crc32(buffer) != self.data_crc:
            raise CacheError("its data fail their CRC")
        data = _Section(buffer)
        return (
            _chunks(self.header["metrics_history"], data, self.metrics_facts.rows),
            _chunks(self.header["superseded_history"], data, self.superseded_facts.rows),
            _chunks(self.header.get("system_history") or [], data, self.system_facts.rows),
        )


def read_cache(document: Path, save_id: int | None = None) -> CachedRun | None:
    """The header of ``document``'s cache, or None when there is none or it does not
    describe this very file (then read the document). ``save_id``: also require this one.
    ``CS336_NO_CACHE=1``: always None."""
    if env.caches_off():
        return None
    path = cache_path(document)
    try:
        with os.fdopen(open_regular(path), "rb") as handle:
            st = os.fstat(handle.fileno())
            if st.st_size < len(MAGIC) + _TRAILER_SIZE or handle.read(len(MAGIC)) != MAGIC:
                return None
            handle.seek(st.st_size - _TRAILER_SIZE)
            tail = handle.read(_TRAILER_SIZE)
            if not tail.endswith(END):
                return None  # torn, or being appended to
            data_size, length, header_crc, data_crc = _TRAILER.unpack(tail[: _TRAILER.size])
            if len(MAGIC) + data_size + length + _TRAILER_SIZE != st.st_size:
                return None
            handle.seek(len(MAGIC) + data_size)
            raw = handle.read(length)
        if len(raw) != length or zlib.crc32(raw) != header_crc:
            return None
        header = orjson.loads(raw)
        key = header["key"]
        if key != document_key(os.stat(document), key.get("save_id")):
            return None
        if save_id is not None and key.get("save_id") != save_id:
            return None
        if not isinstance(header["meta"], dict) or header["data_size"] != data_size:
            return None
        cached = CachedRun(
            path,
            (st.st_ino, st.st_size, st.st_mtime_ns),
            header,
            len(MAGIC),
            data_crc,
            _read_facts(header, "metrics_history", path),
            _read_facts(header, "superseded_history", path),
            _read_facts(header, "system_history", path)
            if "system_history" in header["facts"]
            else Facts(0, None, None, {}),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        logger.debug("ignoring the cache %s: %s", path, exc)  # (LogFormatError is a ValueError)
        return None
    return cached
