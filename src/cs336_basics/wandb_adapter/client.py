"""What the sink, push and pull share about the wandb client: importing it, run ids, and
every difference between the wandb releases this package supports (``wandb>=0.19.10``).

Differences met, and where they are handled:

- ``wandb.init(reinit="create_new")`` exists from 0.19.10 (the oldest release supported);
- up to 0.26, ``wandb.Api()`` speaks ``requests``; from 0.27 it goes through the wandb-core
  service. On 0.25-0.26 a refused connection is retried for days whatever ``timeout`` says,
  and 0.19 takes half a minute: :func:`bounded` puts a deadline on such calls;
- 0.16-0.17 do not import under numpy 2 (``AttributeError``): :func:`import_wandb` turns any
  failure to import into the friendly error.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import secrets
import string
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..core.errors import SinkUnavailableError, WandbPullError, missing_extra

T = TypeVar("T")

DEFAULT_PROJECT = "cs336-basics"


def new_run_id() -> str:
    """A W&B-style run id: 8 characters of [a-z0-9]."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def real_wandb_installed() -> bool:
    """Whether the W&B client is installed, without importing it: a ``wandb`` package on the
    import path that is not this project's drop-in (which a script may have aliased as
    ``sys.modules["wandb"]``, fooling ``importlib.util.find_spec``)."""
    if "wandb" in sys.modules and sys.modules["wandb"] is None:
        return False  # imports of wandb are blocked in this process
    spec = importlib.machinery.PathFinder.find_spec("wandb")
    if spec is None or spec.origin is None:
        return False
    ours = str(Path(__file__).resolve().parents[1])
    return not str(Path(spec.origin).resolve()).startswith(ours)


def check_wandb_installed() -> None:
    """Raise the friendly error if wandb is not installed, without importing it."""
    if not real_wandb_installed():
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
    if getattr(wandb, "__cs336_compat__", False):
        raise SinkUnavailableError(
            "`import wandb` gives this project's drop-in here (the script aliased it); the W&B "
            "client is needed: it runs in the mirror's own process, not in this one"
        )
    return wandb


def bounded(call: Callable[[], T], seconds: float, what: str) -> T:
    """``call()``, or :class:`WandbPullError` if it has not returned within ``seconds``.

    Some wandb releases retry a refused connection far longer than the timeout they are
    given; the call runs on a daemon thread that is abandoned when the deadline passes.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # handed to the caller below
            error.append(exc)

    thread = threading.Thread(target=run, name="cs336-wandb-call", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise WandbPullError(
            f"{what}: no answer from W&B within {seconds:g} s (is WANDB_BASE_URL reachable?)"
        )
    if error:
        raise error[0]
    return result[0]
