"""Shared fixtures. wandb, when imported by a test, runs offline against temp dirs only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session", autouse=True)
def _quiet_offline_wandb(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Set before any wandb.init in this process: the sidecar reads its env once."""
    base = tmp_path_factory.mktemp("wandb-home")
    defaults = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_X_DISABLE_STATS": "true",
        "WANDB_DIR": str(base / "runs"),
        "WANDB_CONFIG_DIR": str(base / "config"),
        "WANDB_CACHE_DIR": str(base / "cache"),
        "WANDB_DATA_DIR": str(base / "data"),
    }
    for key, value in defaults.items():
        os.environ[key] = value
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "CS336_SINKS", "RANK", "LOCAL_RANK"):
        os.environ.pop(key, None)
    for key in ("runs", "config", "cache", "data"):
        (base / key).mkdir(parents=True, exist_ok=True)
