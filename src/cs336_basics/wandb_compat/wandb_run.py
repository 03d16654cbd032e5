"""``wandb.wandb_run``: ``Run`` is the drop-in's run class, so a framework's
``isinstance(run, wandb.wandb_run.Run)`` (Lightning declares its step axis only then) holds
for the runs ``init`` returns."""

from __future__ import annotations

from cs336_basics.wandb_compat._run import Run  # absolute: imported as wandb.wandb_run too

__all__ = ["Run"]
