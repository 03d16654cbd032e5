"""Exceptions raised by the tracker.

Hierarchy::

    TrackingError                 base of everything below
    +-- LogFormatError            a file is not a readable experiment log (ValueError too)
    +-- UsageError                a request that cannot be met as asked (ValueError too):
    |   +-- UnknownRunError       no run matches a name, run id or pattern (KeyError too)
    +-- RunClosedError            logging to a finished or closed tracker (RuntimeError too)
    +-- RunInUseError             the run is being written by another live tracker
    +-- SinkUnavailableError      an optional sink cannot be created (missing package, bad name)
    +-- WandbPullError            pulling runs from W&B failed (names what and why)
    +-- PushError                 a local run cannot be pushed to W&B (names the run and why)

Bad arguments to the public API raise the built-in ``TypeError``/``ValueError`` with a
sentence naming the argument, the value that came in and what was expected. Errors raised
while handling another keep it as their ``__cause__``.
"""

from __future__ import annotations


class TrackingError(Exception):
    """Base class of this package's own errors."""


class LogFormatError(TrackingError, ValueError):
    """A file could not be read as an experiment log; the message names the file and why."""


class UsageError(TrackingError, ValueError):
    """What was asked for cannot be done as asked (unknown metric, bad output path, ...)."""


class UnknownRunError(UsageError, KeyError):
    """No loaded run has this name, run id or matches this pattern."""

    def __str__(self) -> str:  # KeyError's str() would quote the whole message
        return str(self.args[0]) if self.args else ""


class RunClosedError(TrackingError, RuntimeError):
    """The tracker was finished or closed; the message says how to resume the run."""


class RunInUseError(TrackingError):
    """Another live tracker (this host, a running process) is writing this run."""


class SinkUnavailableError(TrackingError):
    """A sink was asked for that cannot be made here (unknown name or missing extra)."""


class WandbPullError(TrackingError):
    """Reading runs back from Weights & Biases failed; the message says which call and why."""


class PushError(TrackingError):
    """A local run cannot be uploaded to W&B; the message names the run and why."""


def missing_extra(package: str, extra: str) -> SinkUnavailableError:
    """The error for an optional dependency that is not installed."""
    return SinkUnavailableError(
        f"{package} is not installed; run: pip install 'cs336-basics[{extra}]'"
    )
