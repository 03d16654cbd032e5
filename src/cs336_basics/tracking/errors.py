"""Exceptions raised by the tracker.

Hierarchy::

    TrackingError                 base of everything below
    +-- LogFormatError            a file is not a readable experiment log (ValueError too)
    +-- SinkUnavailableError      an optional sink cannot be created (missing package, bad name)
    +-- WandbPullError            pulling runs from W&B failed (names what and why)

Bad arguments to the public API raise the built-in ``TypeError``/``ValueError`` with a
sentence naming the argument, the value that came in and what was expected.
"""

from __future__ import annotations


class TrackingError(Exception):
    """Base class of this package's own errors."""


class LogFormatError(TrackingError, ValueError):
    """A file could not be read as an experiment log; the message names the file and why."""


class SinkUnavailableError(TrackingError):
    """A sink was asked for that cannot be made here (unknown name or missing extra)."""


class WandbPullError(TrackingError):
    """Reading runs back from Weights & Biases failed; the message says which call and why."""


def missing_extra(package: str, extra: str) -> SinkUnavailableError:
    """The error for an optional dependency that is not installed."""
    return SinkUnavailableError(
        f"{package} is not installed; run: pip install 'cs336-basics[{extra}]'"
    )
