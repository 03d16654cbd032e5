"""``wandb.sdk.lib``: ``RunDisabled``, which Lightning's ``WandbLogger`` imports and checks
its run against (with ``wandb.wandb_run.Run``). The drop-in's runs are never disabled-run
objects: a ``mode="disabled"`` run is a local run with no mirror."""

from __future__ import annotations


class RunDisabled:
    """W&B's stand-in for a disabled run; no drop-in run is one."""


__all__ = ["RunDisabled"]
