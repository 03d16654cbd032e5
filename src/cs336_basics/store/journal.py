"""The journal: the run's append-only ``.jsonl`` file, its records, its replay and its reader.

This module owns the format (the writer thread is ``runtime.journal_writer``). One JSON
object per line; ``k`` names the record kind:

========  =====================================================================
``h``     header, always the first line: run id, config, start time, notes, tags,
          group, job type, summary, ``compute`` (FLOPs per token, peak), the
          ``save_id`` of the document it continues (``base``), writer pid and host
``m``     a metrics row: ``{"k": "m", "r": <the row as in metrics_history>}``
``e``     an eval: iteration ``i``, gradient step ``g``, wall-clock ``w``, val loss
          ``v``, train loss ``t``, extra metrics ``extra``
``u``     values added to the row of an iteration (the W&B drop-in logging one
          iteration in several calls): ``i``, ``g``, ``w``, and ``values`` (row fields
          and extra metrics by name)
``f``     finish: end time, duration, explicit final losses, notes
``x``     a mirror's state: ``{"k": "x", "mirrors": {name: state}}``
``n``     notes replaced
``a``     attributes set: any of ``tags``, ``group``, ``job_type``, ``summary``
          (values added to the run's other summary values) and ``provenance``
          (replaces it: recorded by a thread once the run started)
``c``     the tracker was closed without finishing (the run is not live any more)
``s``     a system-metrics sample: ``{"k": "s", "r": <the row as in system_history>}``
          (its ``iteration`` is the sample's number: a sample the run holds already,
          written by a save and by the journal around it, is skipped)
``w``     an alert (``core.alerts``): its number in the run ``n`` (from 0; one the run
          holds already is skipped) and ``alert``: iteration, gradient_step,
          wallclock_time, kind, metric, value, baseline, deviation, detected_at
========  =====================================================================

Floats that are NaN or infinite are written as the document writes them (``"NaN"``,
``"Infinity"``, ``"-Infinity"``). A torn last line (the process died mid-write) is skipped.
A reader skips record kinds it does not know (a newer writer's).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ..core.alerts import Alert
from ..core.config import ExperimentConfig
from ..core.errors import LogFormatError
from ..core.log import (
    ExperimentLog,
    apply_alert,
    apply_eval,
    apply_finish,
    apply_metrics,
    apply_system,
    apply_update,
)
from ..core.row import MetricsSnapshot
from ..core.values import NonFinite, from_marker
from .codec import FORMAT_VERSION, dumps, plain, row_from_dict, unmark
from .fileio import open_regular
from .layout import RunFiles

_NUMBER_OR_NULL = frozenset({int, float, NonFinite, type(None)})
KIND = "k"
HEADER = "h"
ROW = "m"
EVAL = "e"
UPDATE = "u"
FINISH = "f"
MIRROR = "x"
NOTES = "n"
ATTRIBUTES = "a"
CLOSED = "c"
SYSTEM = "s"
ALERT = "w"


# ---------------------------------------------------------------------------------------
# Encoding.


def encode_header(log: ExperimentLog, base_save_id: int | None, pid: int, host: str) -> bytes:
    record = {
        KIND: HEADER,
        "format_version": FORMAT_VERSION,
        "run_id": log.run_id,
        "config": plain(log.config.to_dict()),
        "start_time": log.start_time,
        "notes": log.notes,
        "tags": list(log.tags),
        "group": log.group,
        "job_type": log.job_type,
        "summary": plain(dict(log.summary)),
        "compute": plain(dict(log.compute)),
        "provenance": plain(dict(log.provenance)),
        "base": base_save_id,
        "pid": pid,
        "host": host,
    }
    return dumps(record) + b"\n"


def encode_row(row: MetricsSnapshot) -> bytes:
    return b'{"k":"m","r":' + dumps(row) + b"}\n"


def eval_record(
    iteration: int,
    gradient_step: int,
    wallclock_time: float,
    val_loss: float | None,
    train_loss: float | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        KIND: EVAL,
        "i": iteration,
        "g": gradient_step,
        "w": wallclock_time,
        "v": val_loss,
        "t": train_loss,
        "extra": extra,
    }


def update_record(
    iteration: int, gradient_step: int, wallclock_time: float, values: dict[str, Any]
) -> dict[str, Any]:
    return {KIND: UPDATE, "i": iteration, "g": gradient_step, "w": wallclock_time, "values": values}


def finish_record(
    end_time: str,
    duration_seconds: float,
    train_loss: float | None,
    val_loss: float | None,
    notes: str | None,
) -> dict[str, Any]:
    return {
        KIND: FINISH,
        "end_time": end_time,
        "duration_seconds": duration_seconds,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "notes": notes,
    }


def mirror_record(name: str, state: dict[str, Any]) -> dict[str, Any]:
    return {KIND: MIRROR, "mirrors": {name: dict(state)}}


def notes_record(notes: str) -> dict[str, Any]:
    return {KIND: NOTES, "notes": notes}


def attributes_record(**attributes: Any) -> dict[str, Any]:
    return {KIND: ATTRIBUTES, **attributes}


def closed_record() -> dict[str, Any]:
    return {KIND: CLOSED}


def system_record(row: MetricsSnapshot) -> dict[str, Any]:
    return {KIND: SYSTEM, "r": row}


def alert_record(number: int, alert: Alert) -> dict[str, Any]:
    return {KIND: ALERT, "n": number, "alert": plain(alert.to_dict())}


def alert_of(record: dict[str, Any], where: str = "alert") -> tuple[int, Alert]:
    """The number and the alert of a ``w`` record (``LogFormatError`` if malformed)."""
    number = record.get("n")
    if type(number) is not int or number < 0:
        raise LogFormatError(f"{where}: n: expected an integer >= 0, got {number!r:.40}")
    data = record.get("alert")
    if isinstance(data, dict):
        data = {k: from_marker(v) for k, v in data.items()}
    try:
        return number, Alert.from_dict(data, where)
    except ValueError as exc:
        raise LogFormatError(str(exc)) from exc


def encode_record(record: MetricsSnapshot | dict[str, Any]) -> bytes:
    """One journal line for a queued record (a metrics row or one of the dicts above)."""
    if type(record) is MetricsSnapshot:
        return encode_row(record)
    return dumps(record) + b"\n"


# ---------------------------------------------------------------------------------------
# Reading.


def apply_record(
    log: ExperimentLog, record: dict[str, Any], where: str = ""
) -> MetricsSnapshot | None:
    """Apply one journal record to ``log``; returns the row a metrics or eval record changed
    (or the sample a system record added).

    Raises ``KeyError``/``TypeError``/``ValueError`` (``LogFormatError``) for a bad record.
    Headers and ``closed`` records change nothing here.
    """
    kind = record.get(KIND)
    if kind == ROW:
        row = row_from_dict(record["r"], where or "journal row")
        apply_metrics(log, row)
        return row
    if kind == EVAL:
        extra = record.get("extra", record.get("x"))  # "x": journals written before 0.2
        if extra is not None:
            if not isinstance(extra, dict):
                raise LogFormatError(f"extra: expected an object, got {extra!r:.60}")
            extra = {str(k): from_marker(v) for k, v in extra.items()}
        return apply_eval(
            log,
            int(record["i"]),
            int(record["g"]),
            float(from_marker(record["w"])),
            from_marker(record.get("v")),
            from_marker(record.get("t")),
            extra,
        )
    if kind == UPDATE:
        values = record.get("values")
        if not isinstance(values, dict):
            raise LogFormatError(f"values: expected an object, got {values!r:.60}")
        numbers = {str(k): from_marker(v) for k, v in values.items()}
        bad = next((k for k, v in numbers.items() if type(v) not in _NUMBER_OR_NULL), None)
        if bad is not None:
            raise LogFormatError(f"values.{bad}: expected a number, got {numbers[bad]!r:.60}")
        return apply_update(
            log, int(record["i"]), int(record["g"]), float(from_marker(record["w"])), numbers
        )
    if kind == FINISH:
        apply_finish(
            log,
            record["end_time"],
            float(from_marker(record["duration_seconds"])),
            from_marker(record.get("train_loss")),
            from_marker(record.get("val_loss")),
            record.get("notes"),
        )
    elif kind == MIRROR:
        mirrors = record.get("mirrors") or {}
        if not isinstance(mirrors, dict) or not all(isinstance(v, dict) for v in mirrors.values()):
            raise LogFormatError(f"mirrors: expected an object of objects, got {mirrors!r:.60}")
        log.mirrors.update(mirrors)
    elif kind == NOTES:
        notes = record.get("notes") or ""
        if not isinstance(notes, str):
            raise LogFormatError(f"notes: expected a string, got {type(notes).__name__}")
        log.notes = notes
    elif kind == ATTRIBUTES:
        apply_attributes(log, record)
    elif kind == SYSTEM:
        row = row_from_dict(record["r"], where or "journal system sample")
        return row if apply_system(log, row) else None
    elif kind == ALERT:
        apply_alert(log, *alert_of(record, where or "journal alert"))
    return None


def apply_attributes(log: ExperimentLog, record: dict[str, Any]) -> None:
    """Tags, group, job type, summary values and provenance of an ``a`` record (or a
    header)."""
    if "tags" in record:
        tags = record["tags"] or []
        if not isinstance(tags, list) or not all(type(t) is str for t in tags):
            raise LogFormatError(f"tags: expected a list of strings, got {tags!r:.60}")
        log.tags = list(tags)
    for name in ("group", "job_type"):
        if name in record:
            value = record[name]
            if value is not None and not isinstance(value, str):
                raise LogFormatError(f"{name}: expected a string or null, got {value!r:.60}")
            setattr(log, name, value)
    summary = record.get("summary")
    if summary is not None:
        if not isinstance(summary, dict):
            raise LogFormatError(f"summary: expected an object, got {summary!r:.60}")
        log.summary.update({str(k): unmark(v) for k, v in summary.items()})
    provenance = record.get("provenance")
    if provenance:
        if not isinstance(provenance, dict):
            raise LogFormatError(f"provenance: expected an object, got {provenance!r:.60}")
        log.provenance = unmark(provenance)


def samples_header(rank: int, pid: int, host: str, run_id: str) -> bytes:
    """The first line of another rank's samples file (``RunFiles.rank_system``)."""
    record = {KIND: HEADER, "format_version": FORMAT_VERSION, "run_id": run_id, "rank": rank}
    return dumps({**record, "pid": pid, "host": host}) + b"\n"


def read_samples(data: bytes, where: str) -> tuple[list[MetricsSnapshot], list[str]]:
    """The samples of another rank's samples file (its ``s`` records, each sample once) and
    the problems met (unreadable lines and bad records are skipped)."""
    holder = ExperimentLog(config=ExperimentConfig(experiment_name="samples"))
    problems: list[str] = []
    lines = data.split(b"\n")
    lines.pop()  # empty, or a line still being written
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append(f"{where}: line {number} is unreadable (skipped)")
            continue
        if not isinstance(record, dict) or record.get(KIND) != SYSTEM:
            continue
        try:
            apply_record(holder, record, f"{where}: line {number}")
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{where}: line {number}: bad sample skipped ({exc})")
    return list(holder.system_history), problems


def header_of(data: bytes) -> dict[str, Any] | None:
    """The header record at the start of a journal's bytes, or None."""
    try:
        record = orjson.loads(data[: data.find(b"\n")] if b"\n" in data else data)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and record.get(KIND) == HEADER else None


def read_header(path: Path) -> dict[str, Any] | None:
    """The journal's header record, or None (no file, not a regular file, or no complete
    header yet)."""
    try:
        fd = open_regular(path)
    except (OSError, LogFormatError):
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            return header_of(handle.readline())
    except OSError:
        return None


def replay(
    path: Path,
    log: ExperimentLog | None,
    base_save_id: int | None,
    is_alive: Callable[[Any, Any], bool],
    data: bytes | None = None,
) -> tuple[ExperimentLog | None, list[str]]:
    """Apply a journal's records to ``log`` (or build a log from its header).

    Returns the log (``None`` when the journal is empty) and a list of problems met (torn or
    unreadable lines, bad records), which never stop the replay. A journal whose ``base`` is
    not ``base_save_id`` is stale (the document already holds its records) and is skipped.
    ``is_alive(pid, host)`` tells whether the writer named in the header still runs.
    ``data``: the file's bytes, read earlier by the caller (then ``path`` only names it).
    """
    problems: list[str] = []
    try:
        lines = (path.read_bytes() if data is None else data).split(b"\n")
    except FileNotFoundError:
        return log, problems
    header: dict[str, Any] | None = None
    alive = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            last = all(not rest.strip() for rest in lines[number:])
            problems.append(
                f"{path}: line {number} is {'torn (skipped)' if last else 'unreadable (skipped)'}"
            )
            continue
        kind = record.get(KIND) if isinstance(record, dict) else None
        if header is None:
            if kind != HEADER:
                raise LogFormatError(f"{path}: not a journal (first record is not a header)")
            header = record
            alive = is_alive(record.get("pid"), record.get("host"))
            if log is not None and record.get("base") != base_save_id:
                if log.status != "finished":
                    log.status = "running" if alive else "unfinished"
                return log, problems
            if log is None:
                try:
                    config = ExperimentConfig.from_dict(unmark(record.get("config") or {}))
                except (TypeError, ValueError) as exc:
                    raise LogFormatError(f"{path}: bad config in the header: {exc}") from exc
                for name in ("start_time", "notes", "run_id"):
                    value = record.get(name)
                    if value is not None and not isinstance(value, str):
                        raise LogFormatError(
                            f"{path}: header {name}: expected a string or null, got {value!r:.40}"
                        )
                log = ExperimentLog(
                    config=config,
                    start_time=record.get("start_time"),
                    notes=record.get("notes") or "",
                    run_id=str(record.get("run_id") or path.stem),
                    source=str(path),
                )
                try:
                    apply_attributes(log, record)
                except LogFormatError as exc:
                    raise LogFormatError(f"{path}: header: {exc}") from exc
                compute = record.get("compute")
                if isinstance(compute, dict):
                    log.compute = {str(k): unmark(v) for k, v in compute.items()}
            continue
        assert log is not None
        where = f"{path}: line {number}"
        if kind == CLOSED:
            alive = False
        try:
            apply_record(log, record, where)
        except (KeyError, TypeError, ValueError) as exc:  # LogFormatError is a ValueError
            problems.append(f"{where}: bad {kind!r} record skipped ({exc})")
    if log is not None and log.status != "finished":
        log.status = "running" if alive else "unfinished"
    return log, problems


# ---------------------------------------------------------------------------------------
# Following a live journal (a mirror process reads it while the tracker writes it).


class JournalFollower:
    """Reads a run's journal as the tracker writes it, across rotations, from a position.

    The journal is a chain of files: segments (rotated journals kept for a mirror, see
    ``JournalWriter.rotate``), then the live ``<stem>.jsonl``, each starting with a header
    whose ``base`` orders them. The position is ``(base, offset)``: the file and the byte
    offset of the first record not yet read. A file is known to be complete once the live
    path names another file (it was rotated); the live file's last line may still grow and
    is read only once complete.

    With ``writer_pid`` only files whose header names that process are read: a mirror
    follows its own training process's records, never those of a tracker that resumed the
    run meanwhile (whose segments are another mirror's).
    """

    def __init__(
        self,
        files: RunFiles,
        base: int | None = None,
        offset: int = 0,
        writer_pid: int | None = None,
    ) -> None:
        self.files = files
        self.journal = files.journal
        self.writer_pid = writer_pid
        self.base = base or 0
        self.offset = offset
        self._handle: Any = None
        self._tail = b""

    def _files(self) -> list[tuple[int, Path]]:
        """(base, path) of every file of the chain that exists now, in order."""
        found = [(b, p) for b, p in self.files.segments() if self._ours(read_header(p))]
        header = read_header(self.journal)  # None: rotation under way, or the run finished
        if header is not None and self._ours(header):
            found.append((int(header.get("base") or 0), self.journal))
        return sorted(found)

    def _ours(self, header: dict[str, Any] | None) -> bool:
        if self.writer_pid is None:
            return True
        return header is not None and header.get("pid") == self.writer_pid

    def _open(self) -> bool:
        # Our file, or, when it is gone (a segment read to its end and removed), the next.
        chosen = next(((b, p) for b, p in self._files() if b >= self.base), None)
        if chosen is None:
            return False
        base, path = chosen
        if base != self.base:
            self.base, self.offset = base, 0
        try:
            self._handle = os.fdopen(open_regular(path), "rb")
        except (FileNotFoundError, LogFormatError):
            return False
        self._handle.seek(self.offset)
        self._tail = b""
        return True

    def _is_live(self) -> bool:
        try:
            return os.path.samestat(os.fstat(self._handle.fileno()), os.stat(self.journal))
        except FileNotFoundError:
            return False

    def read(self) -> list[tuple[tuple[int, int], dict[str, Any]]]:
        """The records written since the last call, each with the position after it.

        Headers are skipped; a line that is not JSON is skipped (and counted as read).
        """
        out: list[tuple[tuple[int, int], dict[str, Any]]] = []
        while True:
            if self._handle is None and not self._open():
                return out
            live = self._is_live()  # asked before reading: a rotated file is complete
            data = self._tail + self._handle.read()
            lines = data.split(b"\n")
            self._tail = lines.pop()
            for line in lines:
                self.offset += len(line) + 1
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict) and record.get(KIND) != HEADER:
                    out.append(((self.base, self.offset), record))
            if live:
                return out
            # Rotated (or removed at finish): this file is complete; go on with the next.
            self._handle.close()
            self._handle = None
            following = [(b, p) for b, p in self._files() if b > self.base]
            if not following:
                self._handle = None
                return out
            self.base, self.offset = following[0][0], 0

    def finished_segments(self, include_current: bool = False) -> list[Path]:
        """Segments wholly behind the position (safe to remove once progress is recorded);
        with ``include_current`` the one being read too (at the end of the run)."""
        return [
            p
            for b, p in self._files()
            if p != self.journal and (b < self.base or (include_current and b == self.base))
        ]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
