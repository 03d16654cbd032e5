"""Shared fixtures. wandb, when imported by a test, runs offline against temp dirs only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session", autouse=True)
def _quiet_offline_wandb(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Set before any wandb.init in this process: the sidecar reads its env once."""
    from wandb_records import offline_env

    os.environ.update(offline_env(tmp_path_factory.mktemp("wandb-home")))
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "CS336_SINKS", "RANK", "LOCAL_RANK"):
        os.environ.pop(key, None)
    # The suite's own runs would record the checkout they run in (its git state, a diff
    # file beside each run when it is dirty): off, except where a test asks for it
    # (ExperimentTracker(provenance=True), or CS336_PROVENANCE=1 in a child's environment).
    os.environ["CS336_PROVENANCE"] = "0"
