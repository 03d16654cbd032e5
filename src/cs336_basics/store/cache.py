"""The columnar cache beside a run's document: ``.<stem>.columns``.

This module owns the cache's format. The JSON document stays the source of truth; the
cache is derived from it, written after each save (and by the first load of a document
that has none), and used only while it provably describes that very file: it records
the document's ``save_id``, size, modification time (ns) and inode, and a cache whose
record differs from the document on disk, or that is torn, foreign or from another
version, is ignored (and rebuilt by whoever may write there).

Layout, all little-endian::

    MAGIC (16 bytes)  header length (8)  header CRC-32 (4)  data CRC-32 (4)
    header (JSON)  padding to 8
    data: the columns' typed arrays, each at an 8-byte aligned offset

The header holds the document without its histories (``meta``: the same JSON values), for
each history its row count, last row and first diverged row (what a listing shows), and
its chunks: row count and, per column, its kind (``range``: start and step; ``array``:
offset, length and typecode of the values, and of the row index when only some rows have a
value; ``list``: the values inline). Loading reads the header only; the data section is
read when a history is first used (a listing of 200 runs reads 200 headers), checked
against its CRC and the header's shapes, and handed out as views of one buffer, no copy.
No file stays open.
"""

from __future__ import annotations

import contextlib
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
from .fileio import open_regular
from .layout import RunFiles, temp_path

logger = logging.getLogger("cs336_basics")

MAGIC = b"CS336-COLUMNS\x00v2"
_PREFIX = struct.Struct("<QII")  # header length, header CRC-32, data CRC-32
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
    """The data section being laid out: arrays to write, at aligned offsets."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.size = 0

    def add(self, values: Any) -> list[Any]:
        view = memoryview(values).cast("B")
        if not _LITTLE and isinstance(values, array):  # the file is little-endian
            swapped = array(values.typecode, values)
            swapped.byteswap()
            view = memoryview(swapped).cast("B")
        offset = self.size
        self.parts.append(view)
        self.size += len(view)
        pad = -self.size % _ALIGN
        if pad:
            self.parts.append(b"\x00" * pad)
            self.size += pad
        return [
            offset,
            len(values),
            values.typecode if isinstance(values, array) else values.format,
        ]


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


def _chunk_specs(chunks: tuple[Chunk, ...], data: _Data) -> list[dict[str, Any]]:
    return [
        {
            "n": chunk.n,
            "fields": [_column_spec(c, data) for c in chunk.fields],
            "extras": {name: _column_spec(c, data) for name, c in chunk.extras.items()},
        }
        for chunk in chunks
        if chunk.n
    ]


def _facts(chunks: tuple[Chunk, ...]) -> dict[str, Any]:
    """Row count, last row, first diverged row, and the best and last value of each loss
    of a history (what a listing reads)."""
    last = chunks[-1].row(chunks[-1].n - 1) if chunks else None
    diverged = None
    for chunk in chunks:
        j = chunk.first_nonfinite(LOSS_FIELDS)
        if j is not None:
            diverged = chunk.row(j)
            break
    history = History.from_chunks(chunks)
    return {
        "n": sum(chunk.n for chunk in chunks),
        "last": last.to_dict() if last else None,
        "diverged": diverged.to_dict() if diverged else None,
        "best_last": {name: list(history.best_last(name)) for name in LOSS_FIELDS},
    }


def write_cache(
    document: Path,
    written: os.stat_result,
    meta: dict[str, Any],
    metrics: tuple[Chunk, ...],
    superseded: tuple[Chunk, ...],
) -> None:
    """Write the cache of ``document``, whose file (``written``: its stat) was written from
    ``meta`` and these chunks.

    Best effort: an error is logged at debug level and the cache is simply missing (the
    next load reads the document). Written to a temporary name and renamed, not fsynced:
    a cache torn by a power cut fails its CRC and is ignored.
    """
    if env.caches_off():
        return
    path = cache_path(document)
    tmp = temp_path(path)
    try:
        data = _Data()
        header = dumps(
            {
                "key": document_key(written, int(meta.get("save_id") or 0)),
                "meta": meta,
                "facts": {
                    "metrics_history": _facts(metrics),
                    "superseded_history": _facts(superseded),
                },
                "metrics_history": _chunk_specs(metrics, data),
                "superseded_history": _chunk_specs(superseded, data),
                "data_size": data.size,
            }
        )
        crc = 0
        for part in data.parts:
            crc = zlib.crc32(part, crc)
        start = len(MAGIC) + _PREFIX.size + len(header)
        pad = -start % _ALIGN
        with open(tmp, "wb") as handle:
            handle.write(MAGIC + _PREFIX.pack(len(header), zlib.crc32(header), crc))
            handle.write(header + b"\x00" * pad)
            for part in data.parts:
                handle.write(part)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError) as exc:
        logger.debug("could not write the cache %s: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


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

    @property
    def meta(self) -> dict[str, Any]:
        return self.header["meta"]

    def load(self) -> tuple[list[Chunk], list[Chunk]]:
        """The two histories' chunks; ``CacheError`` when the file changed since its header
        was read, or its data fail their CRC or their shapes."""
        try:
            with open(self.path, "rb") as handle:
                st = os.fstat(handle.fileno())
                if (st.st_ino, st.st_size, st.st_mtime_ns) != self.identity:
                    raise CacheError("rewritten since its header was read")
                handle.seek(self.data_offset)
                buffer = handle.read()
        except OSError as exc:
            raise CacheError(f"cannot read it ({exc})") from exc
        if len(buffer) != self.header["data_size"] or zlib.crc32(buffer) != self.data_crc:
            raise CacheError("its data fail their CRC")
        data = _Section(buffer)
        return (
            _chunks(self.header["metrics_history"], data, self.metrics_facts.rows),
            _chunks(self.header["superseded_history"], data, self.superseded_facts.rows),
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
            head = handle.read(len(MAGIC) + _PREFIX.size)
            if len(head) < len(MAGIC) + _PREFIX.size or not head.startswith(MAGIC):
                return None
            length, header_crc, data_crc = _PREFIX.unpack(head[len(MAGIC) :])
            if length > st.st_size:
                return None
            raw = handle.read(length)
        if len(raw) != length or zlib.crc32(raw) != header_crc:
            return None
        header = orjson.loads(raw)
        key = header["key"]
        if key != document_key(os.stat(document), key.get("save_id")):
            return None
        if save_id is not None and key.get("save_id") != save_id:
            return None
        if not isinstance(header["meta"], dict):
            return None
        start = len(MAGIC) + _PREFIX.size + length
        start += -start % _ALIGN
        if st.st_size != start + int(header["data_size"]):
            return None  # torn
        cached = CachedRun(
            path,
            (st.st_ino, st.st_size, st.st_mtime_ns),
            header,
            start,
            data_crc,
            _read_facts(header, "metrics_history", path),
            _read_facts(header, "superseded_history", path),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        logger.debug("ignoring the cache %s: %s", path, exc)  # (LogFormatError is a ValueError)
        return None
    return cached
