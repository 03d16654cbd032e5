"""Rows whose values are still accelerator tensors, converted in batches off the hot path.

Reading a GPU tensor forces a host sync, so ``log_metrics`` keeps such values as they are
and queues the row here. The rows are converted together, with one device-to-host copy:

- by the journal writer thread once the oldest has waited ``max_age`` seconds, so a row
  reaches the journal within about a second even when the training loop stops logging;
- on the training thread where the caller needs the numbers anyway (eval, save, finish,
  ``tracker.log``).

Order is kept: while any row waits or is being converted, later rows (even plain-float
ones) queue behind it, and rows are handed on (``emit``) in the order they were logged.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.row import VALUE_FIELDS, MetricsSnapshot
from ..core.values import is_device_tensor, wrap_float

logger = logging.getLogger("cs336_basics")


def has_device_values(row: MetricsSnapshot) -> bool:
    """Whether the row holds a value that is not a float yet (an accelerator tensor)."""
    # Written out (no getattr, no generator): this runs on every log_metrics call.
    for value in (
        row.train_loss,
        row.val_loss,
        row.learning_rate,
        row.tokens_per_sec,
        row.iter_time_ms,
    ):
        if value is not None and not isinstance(value, float):
            return True
    extra = row.extra
    if extra:
        for value in extra.values():
            if not isinstance(value, float):
                return True
    return False


def convert(rows: list[MetricsSnapshot]) -> list[str]:
    """Replace every tensor value of ``rows`` by its float, with one host sync.

    If the batch cannot be read, each value is read alone; one that still fails becomes
    ``None`` (the row and its other values are kept). Returns what was dropped, as
    ``"iteration N: field (error)"``.
    """
    slots: list[tuple[MetricsSnapshot, str | None, str]] = []
    tensors: list[Any] = []
    for row in rows:
        for name in VALUE_FIELDS:
            value = getattr(row, name)
            if is_device_tensor(value):
                slots.append((row, None, name))
                tensors.append(value)
        for key, value in (row.extra or {}).items():
            if is_device_tensor(value):
                slots.append((row, key, key))
                tensors.append(value)
    if not tensors:
        return []
    torch = sys.modules["torch"]
    try:
        stacked = torch.stack([t.detach().reshape(()).float() for t in tensors])
        values: list[Any] = stacked.cpu().tolist()
    except Exception:
        values = [_read_one(t) for t in tensors]
    dropped = []
    for (target, extra_key, field_name), value in zip(slots, values, strict=True):
        if isinstance(value, Exception):
            dropped.append(f"iteration {target.iteration}: {field_name} ({value})")
            value = None
        else:
            value = wrap_float(value)
        if extra_key is None:
            setattr(target, field_name, value)
        else:
            assert target.extra is not None  # the key was found in it above
            target.extra[extra_key] = value
    return dropped


def _read_one(tensor: Any) -> Any:
    try:
        return float(tensor.detach().reshape(()).float().cpu())
    except Exception as exc:  # reported by the caller, with the row and field
        return exc


class DeferredRows:
    """The queue of rows waiting for their tensors to be read (see the module docstring)."""

    def __init__(self, emit: Callable[[MetricsSnapshot], None], max_age: float) -> None:
        self._emit = emit
        self.max_age = max_age
        self._rows: list[MetricsSnapshot] = []
        self._since = 0.0
        self._lock = threading.Lock()  # guards _rows, _since and active
        self._converting = threading.Lock()  # one batch at a time, batches in order
        #: True while a row waits or is being converted: new rows must queue behind it.
        self.active = False
        #: The last values that could not be read (``iteration N: field (error)``), if any.
        self.last_dropped: str | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: MetricsSnapshot) -> None:
        """Queue a row (training thread)."""
        with self._lock:
            if not self._rows:
                self._since = time.monotonic()
            self._rows.append(row)
            self.active = True

    def resolve(self) -> None:
        """Convert and emit everything queued, now (the caller's thread waits for the sync)."""
        self._resolve(0.0)

    def resolve_old(self) -> None:
        """Convert and emit everything queued if the oldest row has waited ``max_age``."""
        if self.active:
            self._resolve(self.max_age)

    def _resolve(self, min_age: float) -> None:
        with self._converting:
            with self._lock:
                if not self._rows or time.monotonic() - self._since < min_age:
                    return
                rows, self._rows = self._rows, []
            dropped = convert(rows)
            if dropped:
                self.last_dropped = "; ".join(dropped[:5]) + (" ..." if len(dropped) > 5 else "")
                logger.error(
                    "%d logged device value(s) could not be read and are left out (the rows "
                    "are kept): %s",
                    len(dropped),
                    self.last_dropped,
                )
            for row in rows:
                self._emit(row)
            with self._lock:
                self.active = bool(self._rows)
