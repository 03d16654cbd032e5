"""Read what an offline wandb run recorded, with wandb's own reader (``wandb leet inspect``)."""

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
    """The run as its last run record has it (notes set at finish come in a later one)."""
    return [r["run"] for r in records(sync_dir) if r.get("type") == "run"][-1]


def summary(sync_dir: str | Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for r in records(sync_dir):
        if r.get("type") == "summary":
            merged.update(r["summary"].get("update") or {})
    return merged


def as_float(value: Any) -> float:
    """wandb's JSON writes NaN/Infinity as strings and 1.0 as 1."""
    return float(value)
