"""What the sink, push and pull share about the wandb client: importing it, run ids."""

from __future__ import annotations

import importlib.util
import secrets
import string
from typing import Any

from ..tracking.errors import missing_extra

DEFAULT_PROJECT = "cs336-basics"


def new_run_id() -> str:
    """A W&B-style run id: 8 characters of [a-z0-9]."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def check_wandb_installed() -> None:
    """Raise the friendly error if wandb is not installed, without importing it."""
    if importlib.util.find_spec("wandb") is None:
        raise missing_extra("wandb", "wandb")


def import_wandb() -> Any:
    """The ``wandb`` module, or :class:`SinkUnavailableError` saying how to install it.

    Any failure to import counts, not only a missing package: an installed wandb that
    breaks on import (an old release under numpy 2 raises ``AttributeError``) gets the same
    friendly error, with the cause kept.
    """
    try:
        import wandb
    except Exception as exc:
        error = missing_extra("wandb", "wandb")
        if not isinstance(exc, ImportError):
            error = type(error)(
                f"wandb is installed but failed to import ({type(exc).__name__}: {exc}); "
                "install a release this package supports: pip install 'cs336-basics[wandb]'"
            )
        raise error from exc
    return wandb
