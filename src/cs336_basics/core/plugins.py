"""The one way lower layers reach optional upper parts: by name, imported on first use.

The core, the store, the runtime and the analysis never import the W&B adapter or the page.
Where they offer what those provide (``sinks=["wandb"]``, ``ExperimentAnalyzer.load_wandb``),
they name it here as ``"module:attribute"`` and :func:`load` imports it when a user first
asks for it, so a core-only install never imports wandb and the layers stay one-way.
"""

from __future__ import annotations

import importlib
from typing import Any

#: What lower layers may reach, by purpose.
WANDB_SINK = "cs336_basics.wandb_adapter.sink:WandbSink"
PULL_RUNS = "cs336_basics.wandb_adapter.pull:pull_runs"


def load(target: str) -> Any:
    """The attribute ``"module:attribute"`` names (the module imported now)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
