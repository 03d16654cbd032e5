"""``wandb.sdk.lib.config_util``: ``ConfigError``, which the Hugging Face callback imports and
catches around setting a config value. The drop-in's config never raises it (a value set
again replaces the old one, as with ``allow_val_change=True``)."""

from __future__ import annotations


class ConfigError(Exception):
    """W&B's error for changing a config value without ``allow_val_change``."""


__all__ = ["ConfigError"]
