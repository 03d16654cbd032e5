"""Loading one run for the page, in a worker process, with the journal position where the
reading stopped.

This runs in a worker process (see :mod:`.store`): decoding a big document without a
cache builds every row first, and that peak, and the CPU time, stay out of the server. The
reading is the package's one loader (``store.load.load_run``), without writing caches (the
page never writes in a log directory); its position in the live journal is where the
page's follower goes on, so no record is read twice and none is missed. The worker sends
back the run (columns, not row objects), its results and the first chart's fine thinnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.log import ExperimentLog
from ..store.load import load_run
from .series import precompute


@dataclass
class Loaded:
    """A loaded run and where its journal follower starts: ``(base, offset)`` as in
    ``store.journal.JournalFollower``; ``follow``: the run may still grow."""

    log: ExperimentLog
    base: int
    offset: int
    follow: bool
    problems: list[str]
    fine: dict[Any, Any] = field(default_factory=dict)


def load(path: str) -> Loaded:
    """Load the run whose ``.json`` or ``.jsonl`` is ``path``; raises ``LogFormatError`` or
    ``OSError`` when it cannot be read."""
    problems: list[str] = []
    loaded = load_run(path, problems.append, cache=False, lazy=False)
    log = loaded.log
    base, offset = loaded.position
    return Loaded(log, base, offset, not log.finished, problems, precompute(log))
