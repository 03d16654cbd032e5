"""Read what an offline wandb run recorded, with wandb's own reader: ``wandb leet inspect``
(wandb >= 0.31), else the ``DataStore`` older releases ship."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def offline_env(base: Path) -> dict[str, str]:
    """Environment for a quiet, offline wandb that writes only under ``base``.

    Set it before the first ``wandb.init`` of the process: the sidecar reads it once.
    """
    dirs = {name: base / name for name in ("runs", "config", "cache", "data")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_X_DISABLE_STATS": "true",
        "WANDB_DIR": str(dirs["runs"]),
        "WANDB_CONFIG_DIR": str(dirs["config"]),
        "WANDB_CACHE_DIR": str(dirs["cache"]),
        "WANDB_DATA_DIR": str(dirs["data"]),
    }


def run_file(sync_dir: str | Path) -> Path:
    files = sorted(Path(sync_dir).glob("run-*.wandb"))
    assert files, f"no .wandb file in {sync_dir}"
    return files[0]


def _has_leet() -> bool:
    """``wandb leet inspect`` exists from wandb 0.31 on."""
    from importlib.metadata import version

    major, minor = (int(part) for part in version("wandb").split(".")[:2])
    return (major, minor) >= (0, 31)


def _leet_records(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


def _items(items: Any) -> dict[str, Any]:
    """Items as ``{key: value}``; a key may be stored as ``key`` or as ``nested_key`` parts."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def _datastore_records(path: Path) -> list[dict[str, Any]]:
    """The same records as ``leet inspect --json`` gives, read with the ``DataStore`` that
    wandb releases before 0.31 ship (only the fields the tests look at)."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    store = datastore.DataStore()
    store.open_for_scan(str(path))
    try:
        return [_as_dict(wandb_internal_pb2, data) for data in iter(store.scan_data, None)]
    finally:
        store.close()


def _as_dict(proto: Any, data: bytes) -> dict[str, Any]:
    record = proto.Record()
    record.ParseFromString(data)
    kind = record.WhichOneof("record_type")
    body = getattr(record, kind) if kind else None
    if kind == "history":
        return {"type": kind, kind: {"item": _items(body.item)}}
    if kind == "summary":
        return {"type": kind, kind: {"update": _items(body.update)}}
    if kind == "run":
        run = {"display_name": body.display_name, "config": {"update": _items(body.config.update)}}
        if body.notes:
            run["notes"] = body.notes
        run.update(tags=list(body.tags), run_group=body.run_group, job_type=body.job_type)
        return {"type": kind, kind: run}
    if kind == "alert":
        return {
            "type": kind,
            kind: {"title": body.title, "text": body.text, "level": body.level},
        }
    if kind == "exit":
        return {"type": kind, kind: {"exit_code": body.exit_code}}
    if kind == "metric":
        metric = {k: v for k, v in (("name", body.name), ("glob_name", body.glob_name)) if v}
        return {"type": kind, kind: metric}
    return {"type": kind}


def records(sync_dir: str | Path, timeout: float = 20.0) -> list[dict[str, Any]]:
    """All records of the run, once its exit record is on disk (finish() can return early)."""
    path = run_file(sync_dir)
    read = _leet_records if _has_leet() else _datastore_records
    deadline = time.monotonic() + timeout
    while True:
        try:
            recs = read(path)
        except AssertionError:  # older readers: a file whose header is not written yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        if any(r.get("type") == "exit" for r in recs) or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


def history(sync_dir: str | Path) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r["history"]["item"].items() if not k.startswith("_")}
        for r in records(sync_dir)
        if r.get("type") == "history"
    ]


def run_record(sync_dir: str | Path) -> dict[str, Any]:
    """The run as its last run record has it (notes set at finish come in a later one)."""
    return [r["run"] for r in records(sync_dir) if r.get("type") == "run"][-1]


def alerts(sync_dir: str | Path) -> list[dict[str, Any]]:
    """The run's alerts (``run.alert``): title, text, level each."""
    return [r["alert"] for r in records(sync_dir) if r.get("type") == "alert"]


def summary(sync_dir: str | Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for r in records(sync_dir):
        if r.get("type") == "summary":
            merged.update(r["summary"].get("update") or {})
    return merged


def as_float(value: Any) -> float:
    """wandb's JSON writes NaN/Infinity as strings and 1.0 as 1."""
    return float(value)
