"""The W&B mirror process's sink: ``build_sink(settings)``.

The tracker starts the mirror process (``runtime.mirrors``); ``runtime.mirror_child`` runs
there and calls :func:`build_sink` with the ``WandbSink`` settings the tracker chose. The
process is started isolated from the training script's import path, so ``import wandb``
here is the real client; :func:`build_sink` checks it all the same, and names what it found
if it is not.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import SinkUnavailableError
from .client import import_wandb
from .sink import WandbSink


def build_sink(settings: dict[str, Any]) -> WandbSink:
    """The sink of a mirror process (wandb is imported here, in this process)."""
    wandb = import_wandb()
    if not hasattr(wandb, "init") or getattr(wandb, "__cs336_compat__", False):
        raise SinkUnavailableError(
            f"`import wandb` gives {getattr(wandb, '__file__', wandb)!r}, not the W&B client; "
            "install wandb (pip install 'cs336-basics[wandb]')"
        )
    return WandbSink.from_process_spec(settings)
