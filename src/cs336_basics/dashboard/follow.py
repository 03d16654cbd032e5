"""Following a run's journal as it grows: records applied at the end of the columns.

The records' rules (``journal.apply_record``: append, merge an eval into its row, a restart
that supersedes rows) are applied to a scratch log holding only the run's last row; the
result replaces that row in the columns. A record that reaches further back (an eval of an
older iteration, a restart from an older checkpoint) cannot be applied this way: the run is
marked for a full reload instead, which reads it the way ``load_run`` does.

The reading itself is ``journal.JournalFollower``'s: it goes on across a rotation (the
journal replaced after ``save()``) into the fresh journal, and stops when the journal is
removed at ``finish()``. Both events also replace the document, which makes the store
reload the run; until then, rows of the fresh journal are shown on the columns already held.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..tracking import journal
from ..tracking.history import History
from ..tracking.records import ExperimentConfig, ExperimentLog
from .columns import RunData

logger = logging.getLogger("cs336_basics")
_SCRATCH_CONFIG = ExperimentConfig(experiment_name="scratch")


class Follower:
    """Applies what a run's journal gains to the run's columns."""

    def __init__(self, data: RunData, path: Path, base: int, offset: int) -> None:
        self.data = data
        self.path = path
        self._reader = journal.JournalFollower(path, base, offset)
        #: Set when a record could not be applied at the end: reload the whole run.
        self.needs_reload = False

    def poll(self) -> bool:
        """Read and apply the new records; True when the columns or the status changed."""
        changed = False
        for _position, record in self._reader.read():
            changed |= self._apply(record)
        return changed

    def _apply(self, record: dict[str, Any]) -> bool:
        data = self.data
        kind = record.get(journal.KIND)
        if kind == journal.FINISH:
            data.status = "finished"
            self.needs_reload = True  # the summary is computed over the whole history
            return True
        if kind == journal.CLOSED:
            data.status = "unfinished"
            return True
        if kind not in (journal.ROW, journal.EVAL):
            return False
        body = record.get("r") if kind == journal.ROW else record
        iteration = (
            body.get("iteration" if kind == journal.ROW else "i")
            if isinstance(body, dict)
            else None
        )
        last = data.last_iteration
        if last is not None and isinstance(iteration, int) and iteration < last:
            self.needs_reload = True  # before the last row: only a full reload applies it
            return False
        scratch = ExperimentLog(
            config=_SCRATCH_CONFIG,
            metrics_history=History([data.row(data.n - 1)] if data.n else []),
        )
        try:
            journal.apply_record(scratch, record, f"{self.path}: record")
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("%s: a bad %r record is skipped (%s)", self.path, kind, exc)
            return False
        if data.n:
            data.truncate(data.n - 1)
        for row in scratch.metrics_history:
            data.append(row)
        return True

    def close(self) -> None:
        self._reader.close()
