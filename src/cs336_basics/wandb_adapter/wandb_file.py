"""Read the records of a ``run-<id>.wandb`` file with wandb's own reader, no server.

- wandb >= 0.31: ``wandb leet inspect --json FILE`` (its Go ``wandb-core`` reads the file and
  prints one JSON object per record), run as a subprocess and parsed as it streams. It is run
  offline with error reporting off, so it never connects anywhere.
- older releases (up to 0.29): ``wandb.sdk.internal.datastore.DataStore`` reads the file and
  each record is a ``wandb_internal_pb2.Record``; it is turned into the same JSON shape.

Either way :func:`read_records` yields dicts like ``{"type": "history", "history": {"item":
{key: value}}}``, ``{"type": "run", "run": {...}}``, ``{"type": "config"|"summary", ...:
{"update": {...}, "remove": [...]}}``, ``{"type": "exit", "exit": {"exit_code": n}}``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..core.errors import LogFormatError, SinkUnavailableError
from .client import import_wandb


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


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record of the ``.wandb`` file ``path``, in order."""
    if reader_name() == "leet":
        yield from _leet_records(path)
    else:
        yield from _datastore_records(path)


# --------------------------------------------------------------------------- wandb >= 0.31
def _leet_records(path: Path) -> Iterator[dict[str, Any]]:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_ERROR_REPORTING="false", WANDB_SILENT="true")
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    loads = orjson.loads
    try:
        for line in proc.stdout:
            if line.startswith(b"{"):
                yield loads(line)
        stderr = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
    finally:
        if proc.poll() is None:  # the consumer stopped early
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if code != 0:
        last = stderr.splitlines()[-1] if stderr else f"exit status {code}"
        raise LogFormatError(f"{path}: `wandb leet inspect` could not read it ({last})")


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


def _datastore_records(path: Path) -> Iterator[dict[str, Any]]:
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore  # type: ignore[attr-defined,unused-ignore]

    store = datastore.DataStore()
    try:
        store.open_for_scan(str(path))
    except Exception as exc:
        raise LogFormatError(f"{path}: not a readable .wandb file ({exc})") from exc
    try:
        while True:
            try:
                data = store.scan_data()
            except Exception as exc:
                raise LogFormatError(f"{path}: a damaged record ({exc})") from exc
            if data is None:
                return
            record = wandb_internal_pb2.Record()  # type: ignore[attr-defined,unused-ignore]
            record.ParseFromString(data)
            converted = record_to_dict(record)
            if converted is not None:
                yield converted
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
