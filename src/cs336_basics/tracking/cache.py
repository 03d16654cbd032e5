"""The columnar cache beside a run's document: ``.<stem>.columns``.

This module owns the cache's format. The JSON document stays the source of truth; the
cache is derived from it, written after each save (and by the first load of a document
that has none), and used only while it provably describes that very file: it records
the document's ``save_id``, size, modification time (ns) and inode, and a cache whose
record differs from the document on disk, or that is torn, foreign or from another
version, is ignored (and rebuilt by whoever may write there).

Layout, all little-endian::

    MAGIC (16 bytes)  header length (8 bytes)  header (JSON)  padding to 8
    data: the columns' typed arrays, each at an 8-byte aligned offset

The header holds the document without its histories (``meta``: the same JSON values) and,
for each history, its chunks: row count and, per column, its kind (``range``: start and
step; ``array``: offset, length and typecode of the values, and of the row index when only
some rows have a value; ``list``: the values inline). Loading maps the file and hands the
columns out as read-only views: pages are read when a value is used, so a listing of 200
runs reads 200 headers, and a 6M-row run loads in milliseconds.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import struct
import sys
import threading
from array import array
from pathlib import Path
from typing import Any

import orjson

from . import env
from .codec import dumps, unmark
from .history import Chunk, Column
from .records import ROW_FIELDS

logger = logging.getLogger("cs336_basics")

MAGIC = b"CS336-COLUMNS\x00v1"
SUFFIX = ".columns"
_LENGTH = struct.Struct("<Q")
_ALIGN = 8
_LITTLE = sys.byteorder == "little"


def cache_path(document: Path) -> Path:
    """Where the cache of ``document`` lives (a hidden file beside it)."""
    return document.with_name(f".{document.stem}{SUFFIX}")


def document_key(st: os.stat_result, save_id: int) -> dict[str, int]:
    """What ties a cache to one document file (its stat) and save."""
    return {"save_id": save_id, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


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
    after a power cut a cache that does not match is ignored.
    """
    if env.caches_off():
        return
    path = cache_path(document)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        data = _Data()
        header = dumps(
            {
                "key": document_key(written, int(meta.get("save_id") or 0)),
                "meta": meta,
                "metrics_history": _chunk_specs(metrics, data),
                "superseded_history": _chunk_specs(superseded, data),
                "data_size": data.size,
            }
        )
        start = len(MAGIC) + _LENGTH.size + len(header)
        pad = -start % _ALIGN
        with open(tmp, "wb") as handle:
            handle.write(MAGIC + _LENGTH.pack(len(header)) + header + b"\x00" * pad)
            for part in data.parts:
                handle.write(part)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError) as exc:
        logger.debug("could not write the cache %s: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


def remove_cache(document: Path) -> None:
    with contextlib.suppress(OSError):
        cache_path(document).unlink()


# ---------------------------------------------------------------------------------------
# Reading.


class _Mapped:
    """The data section of a mapped cache; columns are views into it."""

    def __init__(self, view: memoryview, size: int) -> None:
        self.view = view
        self.size = size

    def get(self, spec: list[Any]) -> memoryview:
        offset, count, typecode = spec
        if typecode not in ("d", "q"):
            raise ValueError(f"typecode {typecode!r}")
        end = offset + count * 8
        if not (0 <= offset <= end <= self.size):
            raise ValueError("column outside the data")
        values = self.view[offset:end].cast(typecode)
        if not _LITTLE:
            swapped = array(typecode, values)
            swapped.byteswap()
            return memoryview(swapped)
        return values


def _column(spec: Any, data: _Mapped) -> Column | None:
    if spec is None:
        return None
    kind = spec["kind"]
    if kind == "range":
        return Column("range", start=int(spec["start"]), step=int(spec["step"]))
    if kind == "list":
        values: Any = [unmark(v) for v in spec["values"]]
        nonfinite = True
    elif kind == "array":
        values = data.get(spec["values"])
        nonfinite = bool(spec.get("nonfinite"))
    else:
        raise ValueError(f"column kind {kind!r}")
    index = data.get(spec["index"]) if spec.get("index") is not None else None
    if index is not None and len(index) != len(values):
        raise ValueError("index and values differ in length")
    return Column(kind, values, index, nonfinite=nonfinite)  # type: ignore[arg-type]


def _chunks(specs: Any, data: _Mapped) -> list[Chunk]:
    chunks = []
    for spec in specs:
        n = int(spec["n"])
        fields = [_column(c, data) for c in spec["fields"]]
        if len(fields) != len(ROW_FIELDS) or fields[0] is None or fields[1] is None:
            raise ValueError("a chunk without its row fields")
        extras = {str(k): _column(c, data) for k, c in spec["extras"].items()}
        chunks.append(Chunk(n, fields, {k: c for k, c in extras.items() if c is not None}))
    return chunks


def read_cache(
    document: Path, save_id: int | None = None
) -> tuple[dict[str, Any], list[Chunk], list[Chunk]] | None:
    """The cached ``(meta, metrics chunks, superseded chunks)`` of ``document``, or None
    when there is no cache or it does not describe this very file (then read the document).
    ``save_id``: also require this one. ``CS336_NO_CACHE=1``: always None."""
    if env.caches_off():
        return None
    path = cache_path(document)
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(MAGIC) + _LENGTH.size)
            if len(head) < len(MAGIC) + _LENGTH.size or not head.startswith(MAGIC):
                return None
            (length,) = _LENGTH.unpack(head[len(MAGIC) :])
            header = orjson.loads(handle.read(length))
            key = header["key"]
            if key != document_key(os.stat(document), key.get("save_id")):
                return None
            if save_id is not None and key.get("save_id") != save_id:
                return None
            start = len(MAGIC) + _LENGTH.size + length
            start += -start % _ALIGN
            size = int(header["data_size"])
            if os.fstat(handle.fileno()).st_size != start + size:
                return None  # torn
            if size:
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                view = memoryview(mapped)[start:]
            else:
                view = memoryview(b"")
        data = _Mapped(view, size)
        metrics = _chunks(header["metrics_history"], data)
        superseded = _chunks(header["superseded_history"], data)
        meta = header["meta"]
        if not isinstance(meta, dict):
            return None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        logger.debug("ignoring the cache %s: %s", path, exc)
        return None
    return meta, metrics, superseded
