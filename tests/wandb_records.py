"""Read what an offline wandb run recorded, with wandb's own reader (``wandb leet inspect``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def run_file(sync_dir: str | Path) -> Path:
    files = sorted(Path(sync_dir).glob("run-*.wandb"))
    assert files, f"no .wandb file in {sync_dir}"
    return files[0]


def records(sync_dir: str | Path, timeout: float = 20.0) -> list[dict[str, Any]]:
    """All records of the run, once its exit record is on disk (finish() can return early)."""
    path = run_file(sync_dir)
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        recs = [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]
        if any(r.get("type") == "exit" for r in recs) or time.monotonic() > deadline:
            return recs


def history(sync_dir: str | Path) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r["history"]["item"].items() if not k.startswith("_")}
        for r in records(sync_dir)
        if r.get("type") == "history"
    ]


def run_record(sync_dir: str | Path) -> dict[str, Any]:
    return next(r["run"] for r in records(sync_dir) if r.get("type") == "run")


def summary(sync_dir: str | Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for r in records(sync_dir):
        if r.get("type") == "summary":
            merged.update(r["summary"].get("update") or {})
    return merged


def as_float(value: Any) -> float:
    """wandb's JSON writes NaN/Infinity as strings and 1.0 as 1."""
    return float(value)
