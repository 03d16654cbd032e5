"""Read the records of a ``run-<id>.wandb`` file with wandb's own reader, no server.

- wandb >= 0.31: ``wandb leet inspect --json FILE`` (its Go ``wandb-core`` reads the file and
  prints one JSON object per record), run as a subprocess and parsed as it streams. It is run
  offline with error reporting off, so it never connects anywhere.
- older releases (up to 0.29): ``wandb.sdk.internal.datastore.DataStore`` reads the file and
  each record is a ``wandb_internal_pb2.Record``; it is turned into the same JSON shape.

Either way :func:`read_records` yields dicts like ``{"type": "history", "history": {"item":
{key: value}}}``, ``{"type": "run", "run": {...}}``, ``{"type": "config"|"summary", ...:
{"update": {...}, "remove": [...]}}``, ``{"type": "exit", "exit": {"exit_code": n}}``.

A damaged file is not always an error for the reader: ``leet inspect`` skips corrupt data
(saying so on stderr) and exits 0, and a file cut short ends early. Such complaints are
collected in the ``problems`` list the caller passes (the records read are still yielded),
so an import can say it is partial. An empty file (0 bytes) is refused with
:class:`LogFormatError`. ``leet inspect`` is run as wandb's ``wandb-core`` binary directly
when the installed wandb ships it (what ``python -m wandb leet inspect`` runs, without the
second of Python start-up and wandb import per file), else through ``python -m wandb``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..core.errors import LogFormatError, SinkUnavailableError
from .client import import_wandb

logger = logging.getLogger("cs336_basics")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package missing
        return False


def _wandb_version() -> tuple[int, int]:
    from importlib.metadata import version

    try:
        major, minor = (int(part) for part in version("wandb").split(".")[:2])
    except ValueError:  # a development build: assume the newest
        return (999, 0)
    return major, minor


def reader_name() -> str:
    """``"leet"`` or ``"datastore"``: the reader this wandb ships; the friendly error if none."""
    if not _has_module("wandb"):
        import_wandb()  # raises SinkUnavailableError saying how to install it
    if _wandb_version() >= (0, 31):  # `wandb leet inspect` exists from 0.31 on
        return "leet"
    if _has_module("wandb.sdk.internal.datastore"):
        return "datastore"
    raise SinkUnavailableError(
        "this wandb ships no reader for .wandb files (neither `wandb leet inspect` nor "
        "wandb.sdk.internal.datastore); install wandb <= 0.29 or >= 0.31"
    )


def read_records(
    path: Path, problems: list[str] | None = None
) -> Generator[dict[str, Any], None, None]:
    """Every record of the ``.wandb`` file ``path``, in order.

    What the reader skipped or could not read (corrupt data, a file cut short) is appended
    to ``problems``, one line each (without a list: logged as a warning). Raises
    :class:`LogFormatError` when the file is empty or cannot be read at all.
    """
    path = Path(path)
    try:
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise LogFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if empty:
        raise LogFormatError(
            f"{path}: an empty .wandb file (0 bytes, the run wrote nothing): nothing to import"
        )
    found: list[str] = [] if problems is None else problems
    if reader_name() == "leet":
        yield from _leet_records(path, found)
    else:
        yield from _datastore_records(path, found)
    if problems is None and found:
        logger.warning("%s: %s", path, "; ".join(found))


# --------------------------------------------------------------------------- wandb >= 0.31
_LEET_PREFIX = "wandb leet inspect:"


@functools.lru_cache(maxsize=1)
def _core_binary() -> str | None:
    """wandb's ``wandb-core`` executable (what ``wandb leet`` runs), or None."""
    spec = importlib.util.find_spec("wandb")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        binary = Path(folder) / "bin" / "wandb-core"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def _leet_commands(path: Path) -> list[list[str]]:
    """The commands that print the file's records, fastest first: ``wandb-core leet inspect``
    with the arguments ``wandb leet inspect`` gives it (offline: no telemetry), then the
    ``python -m wandb`` front end itself."""
    commands = []
    core = _core_binary()
    if core is not None:
        resolved = path.resolve()
        commands.append(
            [
                core,
                "leet",
                "inspect",
                "--no-observability",
                "--json",
                "--run-file",
                str(resolved),
                str(resolved.parent.parent),
            ]
        )
    commands.append([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)])
    return commands


def complaints(stderr: str) -> list[str]:
    """The reader's complaints on stderr, one line each (repeats counted, not repeated)."""
    counts: dict[str, int] = {}
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith(_LEET_PREFIX):
            line = line[len(_LEET_PREFIX) :].strip()
        if line:
            counts[line] = counts.get(line, 0) + 1
    return [line if n == 1 else f"{line} ({n} times)" for line, n in counts.items()]


def _leet_records(path: Path, problems: list[str]) -> Iterator[dict[str, Any]]:
    commands = _leet_commands(path)
    for attempt, command in enumerate(commands):
        last = attempt == len(commands) - 1
        code, stderr, count = yield from _run_leet(command)
        if code == 0:
            problems.extend(complaints(stderr))
            return
        if count or last:  # records came (a real read error), or nothing left to try
            lines = complaints(stderr)
            reason = lines[-1] if lines else f"exit status {code}"
            raise LogFormatError(f"{path}: `wandb leet inspect` could not read it ({reason})")
        logger.debug("%s failed (%s); trying %s", command[0], stderr.strip()[-300:], commands[-1])


def _run_leet(command: list[str]) -> Generator[dict[str, Any], None, tuple[int, str, int]]:
    """Run one reader command, yielding its records; returns (exit code, stderr, records)."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_ERROR_REPORTING="false", WANDB_SILENT="true")
    loads = orjson.loads
    count = 0
    # stderr goes to a file: a reader complaining at length never blocks on a full pipe.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if line.startswith(b"{"):
                    count += 1
                    yield loads(line)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the consumer stopped early
                proc.kill()
                proc.wait()
            proc.stdout.close()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return code, stderr, count


# --------------------------------------------------------------------------- wandb <= 0.29
def _json_items(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key = ".".join(item.nested_key) if item.nested_key else item.key
        out[key] = json.loads(item.value_json)
    return out


def record_to_dict(record: Any) -> dict[str, Any] | None:
    """One ``wandb_internal_pb2.Record`` in the JSON shape ``leet inspect`` prints."""
    kind = record.WhichOneof("record_type")
    if kind == "history":
        return {"type": kind, kind: {"item": _json_items(record.history.item)}}
    if kind in ("config", "summary"):
        body = getattr(record, kind)
        removed = [".".join(i.nested_key) if i.nested_key else i.key for i in body.remove]
        return {"type": kind, kind: {"update": _json_items(body.update), "remove": removed}}
    if kind == "exit":
        return {"type": kind, kind: {"exit_code": record.exit.exit_code}}
    if kind == "run":
        run = record.run
        start = (
            run.start_time.ToDatetime().isoformat() + "Z" if run.HasField("start_time") else None
        )
        return {
            "type": kind,
            kind: {
                "run_id": run.run_id,
                "entity": run.entity,
                "project": run.project,
                "display_name": run.display_name,
                "notes": run.notes,
                "tags": list(run.tags),
                "run_group": run.run_group,
                "job_type": run.job_type,
                "start_time": start,
                "config": {"update": _json_items(run.config.update)},
            },
        }
    return None


def _datastore_records(path: Path, problems: list[str]) -> Iterator[dict[str, Any]]:
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore  # type: ignore[attr-defined,unused-ignore]

    store = datastore.DataStore()
    try:
        store.open_for_scan(str(path))
    except Exception as exc:
        raise LogFormatError(f"{path}: not a readable .wandb file ({exc})") from exc
    count = 0
    try:
        while True:
            try:
                data = store.scan_data()
            except Exception as exc:  # DataStore asserts on a bad checksum: it cannot skip
                if count == 0:
                    raise LogFormatError(f"{path}: a damaged record ({exc})") from exc
                problems.append(
                    f"a damaged record after {count} records ({type(exc).__name__}: "
                    f"{str(exc)[:200] or 'no detail'}); the rest of the file was not read"
                )
                return
            if data is None:
                return
            count += 1
            record = wandb_internal_pb2.Record()  # type: ignore[attr-defined,unused-ignore]
            record.ParseFromString(data)
            converted = record_to_dict(record)
            if converted is not None:
                yield converted
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
