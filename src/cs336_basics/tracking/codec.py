"""Encoding and decoding the on-disk formats (pure functions, no I/O).

This module owns the **document** format and the JSON value rules the journal shares
(:mod:`.journal` owns the journal's records):

- the **document**: the guide's JSON object (``config``, ``start_time``, ..., ``metrics_history``,
  ``notes``) plus a few extra keys (``run_id``, ``status``, ``format_version``, ``save_id``,
  ``superseded_history``, ``mirrors``, ``config_changes``). Strict JSON: NaN and +-inf are
  written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` and read back as floats.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import fields as dataclass_fields
from pathlib import PurePath
from typing import Any

import orjson

from .errors import LogFormatError
from .records import (
    FORMAT_VERSION,
    ROW_FIELDS,
    SUMMARY_FIELDS,
    ExperimentConfig,
    ExperimentLog,
    MetricsSnapshot,
)
from .values import MARKERS, NonFinite, from_marker, marker_for

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
    """Strict JSON bytes for any record of this package."""
    try:
        return orjson.dumps(value, default=encode_default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from exc


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


def log_to_document(log: ExperimentLog, save_id: int) -> dict[str, Any]:
    """The JSON document of a run, as a dict whose history rows are still dataclasses."""
    doc: dict[str, Any] = {
        "config": plain(log.config.to_dict()),
        "start_time": log.start_time,
        "end_time": log.end_time,
    }
    for name in SUMMARY_FIELDS:
        doc[name] = plain(getattr(log, name))
    doc["metrics_history"] = log.metrics_history
    doc["notes"] = log.notes
    doc["run_id"] = log.run_id
    doc["status"] = log.status
    doc["format_version"] = FORMAT_VERSION
    doc["save_id"] = save_id
    doc["superseded_history"] = log.superseded_history
    doc["mirrors"] = log.mirrors
    doc["config_changes"] = [plain(change) for change in log.config_changes]
    return doc


def encode_log(log: ExperimentLog, save_id: int = 0) -> bytes:
    """The run as strict JSON bytes (the guide's document)."""
    return dumps(log_to_document(log, save_id))


def _row_from_dict(data: Any, where: str, fix_markers: bool) -> MetricsSnapshot:
    if not isinstance(data, dict):
        raise LogFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if fix_markers:
        data = {k: from_marker(v) for k, v in data.items()}
    try:
        return MetricsSnapshot(**data)
    except TypeError:
        pass
    missing = [k for k in ("iteration", "gradient_step", "wallclock_time") if k not in data]
    if missing:
        raise LogFormatError(f"{where}: missing {', '.join(missing)}") from None
    known = {k: data[k] for k in ROW_FIELDS if k in data}
    extra = dict(data.get("extra") or {})
    extra.update({k: v for k, v in data.items() if k not in known and k != "extra"})
    return MetricsSnapshot(**known, extra=extra or None)


_OUR_KEYS = tuple(f.name for f in dataclass_fields(MetricsSnapshot))


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
    """Rows exactly as this package writes them, built positionally; None otherwise."""
    keys, make = _OUR_KEYS, MetricsSnapshot
    out: list[MetricsSnapshot] = []
    append = out.append
    for row in rows:
        if type(row) is not dict or tuple(row) != keys:
            return None
        append(make(*row.values()))
    return out


def rows_from_dicts(rows: Any, where: str, fix_markers: bool) -> list[MetricsSnapshot]:
    """Build snapshots from decoded JSON rows; fast when rows are exactly ours."""
    if not isinstance(rows, list):
        raise LogFormatError(f"{where}: expected a list, got {type(rows).__name__}")
    with gc_paused():
        if not fix_markers:
            fast = _fast_rows(rows)
            if fast is not None:
                return fast
        return [_row_from_dict(row, f"{where}[{i}]", fix_markers) for i, row in enumerate(rows)]


def has_markers(data: bytes) -> bool:
    """Whether the raw bytes may hold a NaN/inf marker (then rows need the slow path)."""
    return any(marker in data for marker in _MARKER_BYTES)


def document_to_log(doc: Any, source: str, fix_markers: bool = True) -> ExperimentLog:
    """Build an ``ExperimentLog`` from a decoded document; ``LogFormatError`` if foreign."""
    if not isinstance(doc, dict):
        raise LogFormatError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    missing = [k for k in ("config", "metrics_history") if k not in doc]
    if missing:
        raise LogFormatError(f"{source}: not an experiment log (missing {', '.join(missing)})")
    try:
        config = ExperimentConfig.from_dict(unmark(doc["config"]))
    except (TypeError, ValueError) as exc:
        raise LogFormatError(f"{source}: bad config: {exc}") from None
    log = ExperimentLog(
        config=config,
        start_time=doc.get("start_time"),
        end_time=doc.get("end_time"),
        metrics_history=rows_from_dicts(
            doc["metrics_history"], f"{source}: metrics_history", fix_markers
        ),
        notes=doc.get("notes") or "",
        run_id=str(doc.get("run_id") or ""),
        status=str(doc.get("status") or ("finished" if doc.get("end_time") else "unfinished")),
        superseded_history=rows_from_dicts(
            doc.get("superseded_history") or [], f"{source}: superseded_history", fix_markers
        ),
        mirrors=dict(doc.get("mirrors") or {}),
        config_changes=[unmark(change) for change in doc.get("config_changes") or []],
        source=source,
    )
    for name in SUMMARY_FIELDS:
        value = from_marker(doc.get(name))
        if value is not None and not isinstance(value, (int, float)):
            raise LogFormatError(f"{source}: {name}: expected a number, got {value!r:.40}")
        setattr(log, name, None if value is None else float(value))
    return log


def decode_log(data: bytes, source: str) -> tuple[ExperimentLog, int]:
    """Parse document bytes; returns the log and its ``save_id``."""
    try:
        with gc_paused():
            doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise LogFormatError(f"{source}: not valid JSON ({exc})") from None
    log = document_to_log(doc, source, fix_markers=has_markers(data))
    return log, int(doc.get("save_id") or 0)
