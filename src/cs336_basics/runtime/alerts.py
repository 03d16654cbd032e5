"""Alerts as a run trains: :class:`~..core.alerts.AlertDetector` fed from the journal thread.

The journal writer hands :meth:`AlertWatch.observe` every record it writes (rows arrive
there once their accelerator values were read); the alerts a record confirms are added to
the run (``log.alerts``), journaled right after it (``w`` records, in the same write) and
told to the ``cs336_basics`` logger (WARNING), to the in-process sinks and, on a thread of
their own, to the script's ``on_alert`` callback: a slow or failing callback never delays
the journal, and its exceptions are logged, never raised.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..core.alerts import Alert, AlertDetector, AlertRules, row_values
from ..core.log import ExperimentLog
from ..core.row import MetricsSnapshot
from ..store.journal import EVAL, KIND, UPDATE, alert_record

logger = logging.getLogger("cs336_basics")

#: Rows of a resumed run its detector is primed with (the baseline's memory is ~20 rows).
PRIME_ROWS = 500


class AlertWatch:
    """The detector of one tracker, and where its alerts go.

    ``log``: the run now (a resumed tracker replaces its log); ``notify``: called with each
    alert on the journal thread (the tracker hands it to its sink dispatcher; must not
    block); ``on_alert``: the script's callback, run on the ``cs336-alerts`` thread.
    """

    def __init__(
        self,
        log: Callable[[], ExperimentLog],
        rules: AlertRules | None = None,
        notify: Callable[[Alert], None] | None = None,
        on_alert: Callable[[Alert], Any] | None = None,
    ) -> None:
        self.detector = AlertDetector(rules)
        self.names = self.detector.rules.metrics
        self._log = log
        self._notify = notify
        self._on_alert = on_alert
        self._calls: deque[Alert] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._failures: set[str] = set()

    def prime(self, rows: Iterable[MetricsSnapshot]) -> None:
        """Feed a resumed run's last rows without reporting anything (its baseline)."""
        for row in rows:
            self.detector.observe(
                row.iteration,
                row.gradient_step,
                row.wallclock_time,
                row_values(row, self.names),
                quiet=True,
            )

    def observe(self, record: Any) -> list[dict[str, Any]]:
        """The alert records a journal record confirms (the journal writes them after it).

        Never raises: a bug here is logged and the record goes on unjudged."""
        try:
            return self._observe(record)
        except Exception:
            logger.exception("alerts: judging a row failed (the row is kept)")
            return []

    def _observe(self, record: Any) -> list[dict[str, Any]]:
        if type(record) is MetricsSnapshot:
            where = (record.iteration, record.gradient_step, record.wallclock_time)
            values = row_values(record, self.names)
        elif type(record) is dict and record.get(KIND) == EVAL:
            where = (record["i"], record["g"], record["w"])
            values = {"val_loss": record.get("v")} if record.get("v") is not None else {}
            values.update({k: v for k, v in (record.get("extra") or {}).items() if k in self.names})
        elif type(record) is dict and record.get(KIND) == UPDATE:
            where = (record["i"], record["g"], record["w"])
            values = {k: v for k, v in (record.get("values") or {}).items() if k in self.names}
        else:
            return []
        if not values:
            return []
        found = self.detector.observe(*where, values)
        if not found:
            return []
        log = self._log()
        out = []
        for alert in found:
            number = len(log.alerts)
            log.alerts.append(alert)
            out.append(alert_record(number, alert))
            logger.warning("alert (%s): %s", alert.kind, alert.text)
            if self._notify is not None:
                self._notify(alert)
            if self._on_alert is not None:
                self._call_later(alert)
        return out

    # --- the script's callback, on its own thread --------------------------------------
    def _call_later(self, alert: Alert) -> None:
        self._idle.clear()
        self._calls.append(alert)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cs336-alerts", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            while self._calls:
                alert = self._calls.popleft()
                callback = self._on_alert
                if callback is None:
                    continue
                try:
                    callback(alert)
                except Exception as exc:
                    key = type(exc).__name__
                    if key not in self._failures:
                        self._failures.add(key)
                        logger.exception("on_alert raised (it is called again for the next)")
                    else:
                        logger.error("on_alert raised again: %s: %s", key, exc)
            if not self._calls:
                self._idle.set()
                if self._stopping:
                    return

    def close(self, timeout: float = 5.0) -> bool:
        """Wait until the callback has seen every alert (up to ``timeout``), then stop."""
        done = self._idle.wait(timeout)
        self._stopping = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, timeout) if done else 0.1)
        return done
