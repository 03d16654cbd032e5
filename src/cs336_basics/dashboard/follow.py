"""Following a run's journal as it grows: each record applied to the run the page holds.

The records' rules are the journal module's (``journal.apply_record``: append, merge an eval
into its row, a restart that supersedes rows), applied to the run's ``ExperimentLog``
itself, so the page shows what the loader would read. The reading is
``journal.JournalFollower``'s: it goes on across a rotation (the journal replaced after
``save()``) into the fresh journal, and stops when the journal is removed at ``finish()``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core.log import ExperimentLog
from ..store import journal
from ..store.layout import RunFiles

logger = logging.getLogger("cs336_basics")


class Follower:
    """Applies what a run's journal gains to the run's log."""

    def __init__(self, log: ExperimentLog, files: RunFiles, base: int, offset: int) -> None:
        self.log = log
        self.path = files.journal
        self._reader = journal.JournalFollower(files, base, offset)

    def poll(self) -> bool:
        """Read and apply the new records; True when the run changed."""
        changed = False
        for _position, record in self._reader.read():
            changed |= self._apply(record)
        return changed

    def _apply(self, record: dict[str, Any]) -> bool:
        kind = record.get(journal.KIND)
        try:
            journal.apply_record(self.log, record, f"{self.path}: record")
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("%s: a bad %r record is skipped (%s)", self.path, kind, exc)
            return False
        if kind == journal.CLOSED and self.log.status == "running":
            self.log.status = "unfinished"
        return kind != journal.HEADER

    def close(self) -> None:
        self._reader.close()
