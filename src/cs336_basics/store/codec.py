"""Encoding and decoding the on-disk formats (pure functions, no I/O).

This module owns the **document** format and the JSON value rules the journal shares
(:mod:`.journal` owns the journal's records):

- the **document**: the guide's JSON object (``config``, ``start_time``, ..., ``metrics_history``,
  ``notes``) plus a few extra keys (``run_id``, ``status``, ``format_version``, ``save_id``,
  ``superseded_history``, ``mirrors``, ``config_changes``, ``tags``, ``group``,
  ``job_type``, ``summary``: other summary values; ``alerts``: the events detected while it
  trained, each ``{iteration, gradient_step, wallclock_time, kind, metric, value, baseline,
  deviation, detected_at}``; ``compute``: FLOPs per token and peak FLOP/s when given;
  ``provenance``: where the run came from; ``system_history``, last: the system-metrics
  samples, rows as in ``metrics_history`` with the values in ``extra``). Strict JSON: NaN
  and +-inf are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` and read
  back as floats.

Decoding trusts nothing: every field is checked, and a bad one raises ``LogFormatError``
naming the file, the field (``metrics_history[3].train_loss``), the value and what was
expected, so one bad file is skipped instead of breaking what reads a directory. A document
from a newer version (``format_version``) loads with a warning on the ``cs336_basics`` logger.
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import fields as dataclass_fields
from itertools import chain, repeat, starmap
from operator import attrgetter, itemgetter
from pathlib import PurePath
from typing import Any

import orjson

from ..core.alerts import Alert
from ..core.config import ExperimentConfig
from ..core.errors import LogFormatError
from ..core.history import CHUNK_ROWS, Chunk, Column, History
from ..core.log import STATUSES, ExperimentLog
from ..core.row import ROW_FIELDS, SUMMARY_FIELDS, MetricsSnapshot
from ..core.values import MARKERS, NonFinite, from_marker, marker_for

logger = logging.getLogger("cs336_basics")
#: The version of the document and journal formats this package writes.
FORMAT_VERSION = 1
_MARKER_BYTES = tuple(f'"{m}"'.encode() for m in MARKERS)


def encode_default(value: Any) -> Any:
    """orjson's fallback: non-finite floats, paths, numpy scalars, sets."""
    if isinstance(value, float):
        return marker_for(value)
    if isinstance(value, PurePath):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        result = item()
        return marker_for(result) if isinstance(result, float) and result - result != 0 else result
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(
        f"cannot store a value of type {type(value).__name__} ({value!r:.60}) in the log: "
        "expected numbers, strings, booleans, None, lists or dicts"
    )


def dumps(value: Any) -> bytes:
    """Strict JSON bytes for any record of this package; ``TypeError`` naming the value
    that cannot be stored."""
    try:
        return orjson.dumps(value, default=encode_default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as exc:
        cause = exc.__cause__ or _why(value)
        raise TypeError(str(cause or exc)) from exc


def _why(value: Any) -> BaseException | None:
    """The error our default raised for ``value`` (orjson before 3.9 does not chain it)."""
    seen: list[BaseException] = []

    def default(item: Any) -> Any:
        try:
            return encode_default(item)
        except TypeError as exc:
            seen.append(exc)
            raise

    try:
        orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        pass
    return seen[0] if seen else None


def plain(value: Any) -> Any:
    """Mark plain non-finite floats (summary, config) so they take the marker path too."""
    if type(value) is float and value - value != 0.0:
        return NonFinite(value)
    if type(value) is dict:
        return {k: plain(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return [plain(v) for v in value]
    return value


def unmark(value: Any) -> Any:
    """Inverse of :func:`_plain` for decoded config values."""
    if type(value) is dict:
        return {k: unmark(v) for k, v in value.items()}
    if type(value) is list:
        return [unmark(v) for v in value]
    return from_marker(value)


#: The document's keys before ``metrics_history`` (the guide's order), and after it.
_HEAD_KEYS = ("config", "start_time", "end_time", *SUMMARY_FIELDS)
_ROW_KEYS = (*ROW_FIELDS, "extra")


def document_meta(log: ExperimentLog, save_id: int) -> dict[str, Any]:
    """Everything of the document but the two histories, as JSON-ready values (cheap: what
    a save takes on the training thread before the histories are written elsewhere)."""
    doc: dict[str, Any] = {
        "config": plain(log.config.to_dict()),
        "start_time": log.start_time,
        "end_time": log.end_time,
    }
    for name in SUMMARY_FIELDS:
        doc[name] = plain(getattr(log, name))
    doc["notes"] = log.notes
    doc["run_id"] = log.run_id
    doc["status"] = log.status
    doc["format_version"] = FORMAT_VERSION
    doc["save_id"] = save_id
    doc["mirrors"] = plain(dict(log.mirrors))
    doc["config_changes"] = [plain(change) for change in log.config_changes]
    doc["tags"] = list(log.tags)
    doc["group"] = log.group
    doc["job_type"] = log.job_type
    doc["summary"] = plain(dict(log.summary))
    doc["alerts"] = [plain(alert.to_dict()) for alert in list(log.alerts)]
    doc["compute"] = plain(dict(log.compute))
    doc["provenance"] = plain(dict(log.provenance))
    return doc


#: Rows encoded between two pauses of a background writer (about a millisecond of work).
_PIECE_ROWS = 1024


def encode_chunk(chunk: Chunk, pause: Callable[[], None] | None = None) -> bytes:
    """A chunk's rows as the document writes them, comma-separated, without brackets;
    ``pause`` runs after each piece of :data:`_PIECE_ROWS` rows."""
    columns: list[Any] = [chunk.column(i, marked=True) for i in range(len(ROW_FIELDS))]
    columns.append(list(chunk.extra_dicts(marked=True)))
    pieces = []
    for start in range(0, chunk.n, _PIECE_ROWS):
        part = [column[start : start + _PIECE_ROWS] for column in columns]
        rows = list(map(dict, map(zip, repeat(_ROW_KEYS), zip(*part, strict=False))))
        pieces.append(dumps(rows)[1:-1])
        if pause is not None:
            pause()
    return b",".join(pieces)


def _no_pause() -> None:
    pass


def _head_and_rest(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    head = {k: meta[k] for k in _HEAD_KEYS if k in meta}
    return head, {k: v for k, v in meta.items() if k not in head}


def head_bytes(meta: dict[str, Any]) -> bytes:
    """The document up to its first row: the head fields and ``"metrics_history":[``."""
    head, _ = _head_and_rest(meta)
    return dumps(head)[:-1] + b',"metrics_history":['


def chunk_piece(chunk: Chunk, first: bool, pause: Callable[[], None] = _no_pause) -> bytes:
    """A chunk's rows as they follow what came before in a history (a comma first unless
    ``first``)."""
    body = encode_chunk(chunk, pause)
    return body if first else b"," + body


def tail_bytes(
    meta: dict[str, Any],
    superseded: Iterable[Chunk],
    pause: Callable[[], None] = _no_pause,
    system: Iterable[Chunk] = (),
    piece: Callable[[Chunk, bool, Callable[[], None]], bytes] | None = None,
) -> bytes:
    """The document after the last row of ``metrics_history``: the other fields, the
    superseded rows, the system-metrics samples, the closing brace. ``piece``: how a chunk
    of samples is encoded (default :func:`chunk_piece`; a writer may reuse its bytes)."""
    _, rest = _head_and_rest(meta)
    pieces = [b"]," + dumps(rest)[1:-1] + b',"superseded_history":[']
    first = True
    for chunk in superseded:
        if chunk.n:
            pieces.append(chunk_piece(chunk, first, pause))
            first = False
    pieces.append(b'],"system_history":[')
    encode = piece or chunk_piece
    first = True
    for chunk in system:
        if chunk.n:
            pieces.append(encode(chunk, first, pause))
            first = False
    pieces.append(b"]}")
    return b"".join(pieces)


def document_parts(
    meta: dict[str, Any],
    metrics: Iterable[Chunk],
    superseded: Iterable[Chunk],
    pause: Callable[[], None] = _no_pause,
    system: Iterable[Chunk] = (),
) -> Iterator[bytes]:
    """The document in pieces (one per chunk of rows), for a writer that streams it to a
    file: ``meta`` from :func:`document_meta`, the histories as chunks. ``pause`` runs
    after every :data:`_PIECE_ROWS` rows (a background writer lets other threads run).
    The pieces are :func:`head_bytes`, a :func:`chunk_piece` per chunk, :func:`tail_bytes`:
    a writer may reuse the bytes of chunks it wrote before (the same chunk always encodes
    to the same bytes)."""
    yield head_bytes(meta)
    first = True
    for chunk in metrics:
        if chunk.n:
            yield chunk_piece(chunk, first, pause)
            first = False
    yield tail_bytes(meta, superseded, pause, system)


def encode_log(log: ExperimentLog, save_id: int = 0) -> bytes:
    """The run as strict JSON bytes (the guide's document)."""
    meta = document_meta(log, save_id)
    metrics = log.metrics_history.snapshot().chunks()
    superseded = log.superseded_history.snapshot().chunks()
    system = log.system_history.snapshot().chunks()
    return b"".join(document_parts(meta, metrics, superseded, system=system))


# ---------------------------------------------------------------------------------------
# Building rows.


def _row_from_dict(data: Any, where: str, index: int | None, fix_markers: bool) -> MetricsSnapshot:
    """Row ``index`` of a history (``where`` names the history, for errors), or with
    ``index=None`` the one row ``where`` names."""
    if index is not None:
        where = f"{where}[{index}]"
    if not isinstance(data, dict):
        raise LogFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if fix_markers:
        data = {k: from_marker(v) for k, v in data.items()}
        if type(data.get("extra")) is dict:
            data["extra"] = {k: from_marker(v) for k, v in data["extra"].items()}
    try:
        return MetricsSnapshot(**data)
    except TypeError:
        pass
    missing = [k for k in _INT_FIELDS + ("wallclock_time",) if k not in data]
    if missing:
        raise LogFormatError(f"{where}: missing {', '.join(missing)}")
    known = {k: data[k] for k in ROW_FIELDS if k in data}
    extra = data.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise LogFormatError(_expected(f"{where}.extra", "an object or null", extra))
    extra = dict(extra or {})
    extra.update({k: v for k, v in data.items() if k not in known and k != "extra"})
    return MetricsSnapshot(**known, extra=extra or None)


_OUR_KEYS = tuple(f.name for f in dataclass_fields(MetricsSnapshot))
_row_values = itemgetter(*_OUR_KEYS)
_DICT = frozenset({dict})
_ROW_LENGTH = frozenset({len(_OUR_KEYS)})


@contextmanager
def gc_paused():
    """Pause the cyclic GC while building many acyclic objects (its passes dominate)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _fast_rows(rows: list[Any]) -> list[MetricsSnapshot] | None:
    """Rows with exactly this package's keys (in any order), built positionally with C-level
    loops; None for anything else."""
    if not _types(rows) <= _DICT or not set(map(len, rows)) <= _ROW_LENGTH:
        return None
    try:
        return list(starmap(MetricsSnapshot, map(_row_values, rows)))
    except KeyError:  # a row with a key of its own instead of one of ours
        return None


def row_from_dict(data: Any, where: str) -> MetricsSnapshot:
    """One row outside a history (a journal record's), checked; ``LogFormatError`` names
    ``where`` and the field."""
    row = _row_from_dict(data, where, None, fix_markers=True)
    problem = _row_problem(row)
    if problem is not None:
        raise LogFormatError(f"{where}.{problem}")
    return row


def _slow_rows(rows: list[Any], where: str, fix_markers: bool) -> list[MetricsSnapshot]:
    return [_row_from_dict(row, where, i, fix_markers) for i, row in enumerate(rows)]


def rows_from_dicts(rows: Any, where: str, fix_markers: bool) -> list[MetricsSnapshot]:
    """Build and check snapshots from decoded JSON rows; fast when rows are exactly ours.

    ``LogFormatError`` names the first bad row and field (``where[3].train_loss: ...``).
    """
    if not isinstance(rows, list):
        raise LogFormatError(f"{where}: expected a list, got {type(rows).__name__}")
    if len(rows) <= _SCAN_MAX:  # a journal's one row: nothing for the GC to slow down
        return _checked_rows(rows, where, fix_markers)
    with gc_paused():
        return _checked_rows(rows, where, fix_markers)


def _checked_rows(rows: list[Any], where: str, fix_markers: bool) -> list[MetricsSnapshot]:
    built = None if fix_markers else _fast_rows(rows)
    if built is None:
        built = _slow_rows(rows, where, fix_markers)
    if _valid(built):
        return built
    if not fix_markers:  # a marker the byte scan could not see (written with escapes)
        built = _slow_rows(rows, where, True)
        if _valid(built):
            return built
    raise LogFormatError(_first_problem(built, where))


def has_markers(data: bytes) -> bool:
    """Whether the raw bytes may hold a NaN/inf marker (then rows need the slow path)."""
    # Every marker holds a capital N or I, which JSON keys and numbers never do: two
    # memchr scans settle most files without the slower substring searches.
    if b"N" not in data and b"I" not in data:
        return False
    return any(marker in data for marker in _MARKER_BYTES)


# ---------------------------------------------------------------------------------------
# Checking rows. Each column group is checked with C-level loops (``set(map(type, ...))``):
# a 100k-row history costs milliseconds. Only a history that fails is scanned row by row,
# to name the first bad value.

_INT_FIELDS = ("iteration", "gradient_step")
_OPTIONAL_FIELDS = ("train_loss", "val_loss", "learning_rate", "tokens_per_sec", "iter_time_ms")
_INTEGER = frozenset({int})
_NUMBER = frozenset({int, float, NonFinite})
_NUMBER_OR_NULL = _NUMBER | {type(None)}
_OBJECT_OR_NULL = frozenset({dict, type(None)})
_ints = attrgetter(*_INT_FIELDS)
_optionals = attrgetter(*_OPTIONAL_FIELDS)
_wallclock = attrgetter("wallclock_time")
_extra = attrgetter("extra")
_SCAN_MAX = 4


def _types(values: Iterable[Any]) -> set[type]:
    return set(map(type, values))


def _columns_valid(rows: list[MetricsSnapshot]) -> bool:
    """Whether every field of every row has an allowed type (bool is not a number)."""
    if not _types(chain.from_iterable(map(_ints, rows))) <= _INTEGER:
        return False
    if not _types(map(_wallclock, rows)) <= _NUMBER:
        return False
    if not _types(chain.from_iterable(map(_optionals, rows))) <= _NUMBER_OR_NULL:
        return False
    extras = _types(map(_extra, rows))
    if not extras <= _OBJECT_OR_NULL:
        return False
    if dict not in extras:
        return True
    values = chain.from_iterable(map(dict.values, filter(None, map(_extra, rows))))
    return _types(values) <= _NUMBER_OR_NULL


def _valid(rows: list[MetricsSnapshot]) -> bool:
    if len(rows) <= _SCAN_MAX:  # a journal's one row: a plain scan costs less than the sets
        return not any(map(_row_problem, rows))
    return _columns_valid(rows)


def _expected(where: str, what: str, value: Any) -> str:
    return f"{where}: expected {what}, got {value!r:.60}"


def _row_problem(row: MetricsSnapshot) -> str | None:
    """The first bad field of one row, as ``"name: expected ..., got ..."``."""
    for name in _INT_FIELDS:
        if type(getattr(row, name)) not in _INTEGER:
            return _expected(name, "an integer", getattr(row, name))
    if type(row.wallclock_time) not in _NUMBER:
        return _expected("wallclock_time", "a number", row.wallclock_time)
    for name in _OPTIONAL_FIELDS:
        if type(getattr(row, name)) not in _NUMBER_OR_NULL:
            return _expected(name, "a number or null", getattr(row, name))
    if type(row.extra) not in _OBJECT_OR_NULL:
        return _expected("extra", "an object or null", row.extra)
    for key, value in (row.extra or {}).items():
        if type(value) not in _NUMBER_OR_NULL:
            return _expected(f"extra.{key}", "a number or null", value)
    return None


def _first_problem(rows: list[MetricsSnapshot], where: str) -> str:
    for index, row in enumerate(rows):
        problem = _row_problem(row)
        if problem is not None:
            return f"{where}[{index}].{problem}"
    return f"{where}: rows of unexpected types"  # not reached: _columns_valid agrees


def history_from_dicts(rows: Any, where: str, fix_markers: bool) -> History:
    """A decoded history as columns, built and checked a chunk at a time without a row
    object per row when the rows have exactly this package's keys (the documents it
    writes); any other rows go through :func:`rows_from_dicts`. ``LogFormatError`` as
    there."""
    if not isinstance(rows, list):
        raise LogFormatError(f"{where}: expected a list, got {type(rows).__name__}")
    chunks: list[Chunk] = []
    with gc_paused():
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = _fast_chunk(rows[start : start + CHUNK_ROWS])
            if chunk is None:
                return History(rows_from_dicts(rows, where, fix_markers))
            chunks.append(chunk)
    return History.from_chunks(chunks)


_REQUIRED_KINDS = {"iteration": _INTEGER, "gradient_step": _INTEGER, "wallclock_time": _NUMBER}
_fast_chunk_fields = tuple(
    (name, itemgetter(name), _REQUIRED_KINDS.get(name, _NUMBER_OR_NULL)) for name in ROW_FIELDS
)


def _fast_chunk(rows: list[Any]) -> Chunk | None:
    """One chunk from rows that are dicts of exactly our keys with values of the right
    types (markers allowed); None for anything else (the caller takes the checked path)."""
    if not _types(rows) <= _DICT or not set(map(len, rows)) <= _ROW_LENGTH:
        return None
    columns: list[Column | None] = []
    extras: dict[str, Column] = {}
    try:
        for _name, get, allowed in _fast_chunk_fields:
            columns.append(_fast_column(list(map(get, rows)), allowed))
        extras_of_rows = list(map(_get_extra, rows))
        if not _types(extras_of_rows) <= _OBJECT_OR_NULL:
            return None
        for key in dict.fromkeys(chain.from_iterable(filter(None, extras_of_rows))):
            values = [e.get(key) if e else None for e in extras_of_rows]
            column = _fast_column(values, _NUMBER_OR_NULL)
            if column is not None:
                extras[key] = column
    except (KeyError, _NotFast):  # a key of its own instead of one of ours, a bad value
        return None
    return Chunk(len(rows), columns, extras)


_get_extra = itemgetter("extra")


class _NotFast(Exception):
    """A value the fast path does not take (the checked path names it)."""


def _fast_column(values: list[Any], allowed: frozenset[type]) -> Column | None:
    kinds = _types(values)
    if str in kinds:  # NaN/inf markers
        values = [from_marker(v) for v in values]
        kinds = _types(values)
    if not kinds <= allowed:
        raise _NotFast
    return Column.build(values, kinds)


# ---------------------------------------------------------------------------------------
# Checking the document's own fields.

#: Config fields the package computes with (``ExperimentLog.tokens_per_step``).
_COUNT_CONFIG = ("batch_size", "context_length")


def _optional_str(doc: dict[str, Any], name: str, source: str) -> str | None:
    value = doc.get(name)
    if value is not None and type(value) is not str:
        raise LogFormatError(_expected(f"{source}: {name}", "a string or null", value))
    return value


def _optional_int(doc: dict[str, Any], name: str, source: str) -> int | None:
    value = doc.get(name)
    if value is not None and type(value) is not int:
        raise LogFormatError(_expected(f"{source}: {name}", "an integer or null", value))
    return value


def _config(doc: dict[str, Any], source: str) -> ExperimentConfig:
    try:
        config = ExperimentConfig.from_dict(unmark(doc["config"]))
    except (TypeError, ValueError) as exc:
        raise LogFormatError(f"{source}: bad config: {exc}") from exc
    for name in _COUNT_CONFIG:
        value = getattr(config, name)
        if value is not None and (type(value) not in _NUMBER or not math.isfinite(value)):
            raise LogFormatError(
                _expected(f"{source}: config.{name}", "a finite number or null", value)
            )
    return config


def _status(doc: dict[str, Any], source: str) -> str:
    status = doc.get("status")
    if status is None:
        return "finished" if doc.get("end_time") else "unfinished"
    if status not in STATUSES:
        raise LogFormatError(
            _expected(f"{source}: status", f"one of {', '.join(STATUSES)}", status)
        )
    return str(status)


def _mirrors(doc: dict[str, Any], source: str) -> dict[str, Any]:
    mirrors = doc.get("mirrors")
    if mirrors is None:
        return {}
    if not isinstance(mirrors, dict):
        raise LogFormatError(
            _expected(f"{source}: mirrors", 'an object of objects ({"wandb": {...}})', mirrors)
        )
    for name, state in mirrors.items():
        if not isinstance(state, dict):
            raise LogFormatError(_expected(f"{source}: mirrors.{name}", "an object", state))
    return dict(mirrors)


def _config_changes(doc: dict[str, Any], source: str) -> list[dict[str, Any]]:
    changes = doc.get("config_changes")
    if changes is None:
        return []
    if not isinstance(changes, list):
        raise LogFormatError(_expected(f"{source}: config_changes", "a list", changes))
    for index, change in enumerate(changes):
        if not isinstance(change, dict):
            raise LogFormatError(
                _expected(f"{source}: config_changes[{index}]", "an object", change)
            )
    return [unmark(change) for change in changes]


def _tags(doc: dict[str, Any], source: str) -> list[str]:
    tags = doc.get("tags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(type(t) is str for t in tags):
        raise LogFormatError(_expected(f"{source}: tags", "a list of strings", tags))
    return list(tags)


def _summary_extra(doc: dict[str, Any], source: str) -> dict[str, Any]:
    summary = doc.get("summary")
    if summary is None:
        return {}
    if not isinstance(summary, dict):
        raise LogFormatError(_expected(f"{source}: summary", "an object", summary))
    return {str(k): unmark(v) for k, v in summary.items()}


def _alerts(doc: dict[str, Any], source: str) -> list[Alert]:
    alerts = doc.get("alerts")
    if alerts is None:
        return []
    if not isinstance(alerts, list):
        raise LogFormatError(_expected(f"{source}: alerts", "a list", alerts))
    out = []
    for index, item in enumerate(alerts):
        data = {k: from_marker(v) for k, v in item.items()} if isinstance(item, dict) else item
        try:
            out.append(Alert.from_dict(data, f"{source}: alerts[{index}]"))
        except ValueError as exc:
            raise LogFormatError(str(exc)) from exc
    return out


def _compute(doc: dict[str, Any], source: str) -> dict[str, Any]:
    compute = doc.get("compute")
    if compute is None:
        return {}
    if not isinstance(compute, dict):
        raise LogFormatError(_expected(f"{source}: compute", "an object", compute))
    return {str(k): unmark(v) for k, v in compute.items()}


def _provenance(doc: dict[str, Any], source: str) -> dict[str, Any]:
    provenance = doc.get("provenance")
    if provenance is None:
        return {}
    if not isinstance(provenance, dict):
        raise LogFormatError(_expected(f"{source}: provenance", "an object", provenance))
    return dict(unmark(provenance))


def _summary_value(doc: dict[str, Any], name: str, source: str) -> float | None:
    value = from_marker(doc.get(name))
    if value is None:
        return None
    if type(value) not in _NUMBER:
        raise LogFormatError(_expected(f"{source}: {name}", "a number or null", value))
    return float(value)


def _check_version(doc: dict[str, Any], source: str) -> None:
    version = _optional_int(doc, "format_version", source)
    if version is not None and version > FORMAT_VERSION:
        logger.warning(
            "%s was written by a newer version of cs336_basics (format_version %d; this "
            "version reads %d): fields it does not know are ignored; upgrade to read them",
            source,
            version,
            FORMAT_VERSION,
        )


def document_to_log(doc: Any, source: str, fix_markers: bool = True) -> ExperimentLog:
    """Build an ``ExperimentLog`` from a decoded document; ``LogFormatError`` if foreign
    or malformed (the message names the file, the field, the value and what was expected)."""
    if not isinstance(doc, dict):
        raise LogFormatError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    missing = [k for k in ("config", "metrics_history") if k not in doc]
    if missing:
        raise LogFormatError(f"{source}: not an experiment log (missing {', '.join(missing)})")
    try:
        return _document_to_log(doc, source, fix_markers)
    except LogFormatError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise LogFormatError(f"{source}: not a readable experiment log ({exc!r:.200})") from exc


def _document_to_log(doc: dict[str, Any], source: str, fix_markers: bool) -> ExperimentLog:
    _check_version(doc, source)
    log = ExperimentLog(
        config=_config(doc, source),
        start_time=_optional_str(doc, "start_time", source),
        end_time=_optional_str(doc, "end_time", source),
        metrics_history=history_from_dicts(
            doc["metrics_history"], f"{source}: metrics_history", fix_markers
        ),
        notes=_optional_str(doc, "notes", source) or "",
        run_id=_optional_str(doc, "run_id", source) or "",
        status=_status(doc, source),
        superseded_history=history_from_dicts(
            doc.get("superseded_history") or [], f"{source}: superseded_history", fix_markers
        ),
        mirrors=_mirrors(doc, source),
        config_changes=_config_changes(doc, source),
        tags=_tags(doc, source),
        group=_optional_str(doc, "group", source),
        job_type=_optional_str(doc, "job_type", source),
        summary=_summary_extra(doc, source),
        system_history=history_from_dicts(
            doc.get("system_history") or [], f"{source}: system_history", fix_markers
        ),
        alerts=_alerts(doc, source),
        compute=_compute(doc, source),
        provenance=_provenance(doc, source),
        source=source,
    )
    for name in SUMMARY_FIELDS:
        setattr(log, name, _summary_value(doc, name, source))
    return log


def decode_log(data: bytes, source: str) -> tuple[ExperimentLog, int]:
    """Parse document bytes; returns the log and its ``save_id``."""
    try:
        with gc_paused():
            doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise LogFormatError(f"{source}: not valid JSON ({exc})") from exc
    log = document_to_log(doc, source, fix_markers=has_markers(data))
    return log, _optional_int(doc, "save_id", source) or 0
