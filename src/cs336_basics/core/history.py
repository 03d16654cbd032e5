"""A run's history held as columns: what ``ExperimentLog.metrics_history`` is.

To its readers :class:`History` is a sequence of :class:`~.records.MetricsSnapshot` (index
it, slice it, iterate it, compare it with a list). Inside, rows live in two places:

- **chunks**: immutable blocks of rows stored column by column in typed arrays (8 bytes a
  value; a column every row of the block has is dense, one few rows have is sparse, an
  arithmetic run of integers is two numbers, a column no row has costs nothing);
- the **tail**: the latest rows as the objects ``log_metrics`` built, so that the training
  loop's appends cost a list append. Once the tail holds ``2 * CHUNK_ROWS`` rows its oldest
  ``CHUNK_ROWS`` become a chunk, on the caller's thread: about 3 ms every 4096 rows, 0.6 µs
  a row (a background thread was tried: on a loop that holds the GIL it was slower).
  Rows in the tail are never changed in place (a change replaces the row object).

A week of rows logged every step (6M rows) costs about 40 bytes a row instead of the 340 of
row objects. Chunks never change: a change to a row inside one (an eval for an old
iteration, a restart from an older checkpoint) builds a new chunk, so :meth:`snapshot`
hands the background saver the chunks and the tail's row objects in microseconds and the
training thread goes on logging while the document is written.

Rows handed out are copies: changing one does not change the history (use
``history[i] = row``). Readers that want numbers, not rows (plots, the page, summaries)
use :meth:`History.floats` and :meth:`History.best_last`, which read the columns. Values
read back with their types (a block of a column that mixes ints and floats keeps a plain
list); NaN and infinities read back as :class:`~.values.NonFinite`; an extra metric whose
value is ``None`` is the same as an absent one.

Chunk columns may also be read-only views of a buffer (a run loaded from its columnar
cache, see ``store.cache``): a history loaded lazily knows its length, last row, first
diverged row and its losses' best and last values from the cache's header, and reads its
columns only when something else is asked, so listing runs costs almost nothing however
long they are.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from copy import copy
from itertools import chain, repeat
from operator import attrgetter
from typing import Any, overload

from .row import AXIS_FIELDS, LOSS_FIELDS, ROW_FIELDS, MetricsSnapshot
from .values import NonFinite, marker_for

#: Rows per chunk (the tail is frozen in blocks of this many).
CHUNK_ROWS = 4096
_FREEZE_AT = 2 * CHUNK_ROWS

_PLAIN = frozenset({float, int, NonFinite, type(None)})
_INT_ONLY = frozenset({int})
_FLOATS = frozenset({float, NonFinite})
_NONE = type(None)
_extra_of = attrgetter("extra")


def _list_nonfinite(values: list[Any]) -> bool:
    """Whether a list column holds a NaN or infinity (its values must then be marked)."""
    return any(isinstance(v, float) and v - v != 0.0 for v in values)


def _has_nonfinite(values: array) -> bool:
    total = sum(values)
    return total - total != 0.0  # NaN or inf (a finite sum that overflowed says yes too)


_ROW_FIELD_INDEX = {name: i for i, name in enumerate(ROW_FIELDS)}
_AXIS_NAMES = frozenset(AXIS_FIELDS)


class Column:
    """One field of a chunk: ``kind`` is ``"range"`` (``start + step * row``), ``"array"``
    (typed ``values``, typecode ``q`` or ``d``) or ``"list"`` (anything else, kept as is);
    ``index`` (sorted rows) is set when only some rows have a value."""

    __slots__ = ("kind", "values", "index", "start", "step", "nonfinite")

    def __init__(
        self,
        kind: str,
        values: Any = None,
        index: array | None = None,
        start: int = 0,
        step: int = 0,
        nonfinite: bool = False,
    ) -> None:
        self.kind = kind
        self.values = values
        self.index = index
        self.start = start
        self.step = step
        self.nonfinite = nonfinite

    def __getstate__(self) -> dict[str, Any]:
        # A column mapped from a cache file is a memoryview: pickled (and deep-copied) as
        # the array it views.
        state = {name: getattr(self, name) for name in self.__slots__}
        for name in ("values", "index"):
            view = state[name]
            if isinstance(view, memoryview):
                state[name] = array(view.format, view.tobytes())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @classmethod
    def build(cls, values: list[Any], kinds: set[type] | None = None) -> Column | None:
        """The column of ``values`` (one per row, ``None`` = no value); None when empty.
        ``kinds``: ``set(map(type, values))`` when the caller has it already."""
        if kinds is None:
            kinds = set(map(type, values))
        n = len(values)
        index = None
        if _NONE in kinds:
            absent = values.count(None)
            if absent == n:
                return None
            index = array("q", [i for i, v in enumerate(values) if v is not None])
            values = [values[i] for i in index]
            kinds = kinds - {_NONE}
        if kinds <= _INT_ONLY:
            try:
                ints = array("q", values)
            except OverflowError:
                return cls("list", values, index, nonfinite=_list_nonfinite(values))
            if index is None and n >= 2:
                start, step = values[0], values[1] - values[0]
                if step and values[-1] == start + step * (n - 1):
                    if ints == array("q", range(start, start + step * n, step)):
                        return cls("range", start=start, step=step)
            return cls("array", ints, index)
        if kinds <= _FLOATS:  # (ints mixed with floats stay a list: each keeps its type)
            try:
                floats = array("d", values)
            except OverflowError:
                return cls("list", values, index, nonfinite=_list_nonfinite(values))
            return cls(
                "array", floats, index, nonfinite=NonFinite in kinds or _has_nonfinite(floats)
            )
        return cls("list", values, index, nonfinite=_list_nonfinite(values))

    def present(self, n: int) -> list[Any]:
        """The values present, in row order, NaN/inf as :class:`NonFinite`."""
        if self.kind == "range":
            if not self.step:
                return [self.start] * n
            return list(range(self.start, self.start + self.step * n, self.step))
        out = list(self.values) if self.kind == "list" else self.values.tolist()
        if self.nonfinite:
            out = [v if v - v == 0.0 else NonFinite(v) for v in out]
        return out

    def tolist(self, n: int, marked: bool = False) -> list[Any]:
        """One value per row (``None`` where absent); ``marked``: NaN/inf as the document's
        string markers (what the JSON holds) instead of floats."""
        values = self.present(n)
        if marked and self.nonfinite:
            values = [v if v - v == 0.0 else marker_for(v) for v in values]
        if self.index is None:
            return values
        out: list[Any] = [None] * n
        for i, v in zip(self.index, values, strict=False):
            out[i] = v
        return out

    def at(self, row: int) -> Any:
        if self.kind == "range":
            return self.start + self.step * row
        at = row
        if self.index is not None:
            at = bisect.bisect_left(self.index, row)
            if at == len(self.index) or self.index[at] != row:
                return None
        value = self.values[at]
        if self.nonfinite and value - value != 0.0:
            return NonFinite(value)
        return value

    @property
    def nbytes(self) -> int:
        size = 0
        if isinstance(self.values, (array, memoryview)):
            size += self.values.itemsize * len(self.values)
        elif self.values is not None:
            size += 32 * len(self.values)
        if self.index is not None:
            size += 8 * len(self.index)
        return size


class Chunk:
    """An immutable block of ``n`` rows: one :class:`Column` (or None) per row field, and
    the extra metrics by name."""

    __slots__ = ("n", "fields", "extras")

    def __init__(self, n: int, fields: Sequence[Column | None], extras: dict[str, Column]):
        self.n = n
        self.fields = tuple(fields)
        self.extras = extras

    @classmethod
    def from_rows(cls, rows: Sequence[MetricsSnapshot]) -> Chunk | None:
        """The rows as columns; None while a row still holds a value that is not a plain
        number (an accelerator tensor not read yet)."""
        columns: list[Column | None] = []
        for name in ROW_FIELDS:
            values = list(map(attrgetter(name), rows))
            kinds = set(map(type, values))
            if not kinds <= _PLAIN:
                return None
            columns.append(Column.build(values, kinds))
        extras_of_rows = list(map(_extra_of, rows))
        extras: dict[str, Column] = {}
        present = list(filter(None, extras_of_rows))
        if present:
            names = dict.fromkeys(chain.from_iterable(present))
            for name in names:
                values = [e.get(name) if e else None for e in extras_of_rows]
                kinds = set(map(type, values))
                if not kinds <= _PLAIN:
                    return None
                column = Column.build(values, kinds)
                if column is not None:
                    extras[name] = column
        return cls(len(rows), columns, extras)

    def column(self, index: int, marked: bool = False) -> list[Any]:
        column = self.fields[index]
        return [None] * self.n if column is None else column.tolist(self.n, marked)

    def extra_dicts(self, marked: bool = False) -> Iterable[dict[str, Any] | None]:
        if not self.extras:
            return repeat(None, self.n)
        names = list(self.extras)
        lists = [c.tolist(self.n, marked) for c in self.extras.values()]
        return [
            {k: v for k, v in zip(names, values, strict=False) if v is not None} or None
            for values in zip(*lists, strict=False)
        ]

    def rows(self) -> list[MetricsSnapshot]:
        columns = [self.column(i) for i in range(len(ROW_FIELDS))]
        return list(map(MetricsSnapshot, *columns, self.extra_dicts()))

    def row(self, j: int) -> MetricsSnapshot:
        values: list[Any] = [None if c is None else c.at(j) for c in self.fields]
        extra = {k: v for k, c in self.extras.items() if (v := c.at(j)) is not None}
        return MetricsSnapshot(*values, extra or None)  # type: ignore[call-arg]

    @property
    def iterations(self) -> Column:
        """The iteration column (every row has one)."""
        column = self.fields[0]
        assert column is not None
        return column

    def by_name(self, name: str) -> Column | None:
        """The column of a row field or an extra metric (None: no row of this chunk has it)."""
        index = _ROW_FIELD_INDEX.get(name)
        return self.fields[index] if index is not None else self.extras.get(name)

    def named_column(self, name: str) -> list[Any]:
        column = self.by_name(name)
        if column is None:
            return [None] * self.n
        return column.tolist(self.n)

    def first_nonfinite(self, names: Iterable[str]) -> int | None:
        """The first row whose value of one of ``names`` is NaN or infinite."""
        found = None
        for name in names:
            column = self.by_name(name)
            if column is None or not column.nonfinite:
                continue
            for k, value in enumerate(column.values):
                if value - value != 0.0:
                    row = column.index[k] if column.index is not None else k
                    found = row if found is None else min(found, row)
                    break
        return found

    @property
    def nbytes(self) -> int:
        columns = chain(filter(None, self.fields), self.extras.values())
        return sum(c.nbytes for c in columns)


class HistorySnapshot:
    """A history at one moment (see :meth:`History.snapshot`)."""

    __slots__ = ("frozen", "rows")

    def __init__(self, frozen: tuple[Chunk, ...], rows: tuple[MetricsSnapshot, ...]) -> None:
        self.frozen = frozen
        self.rows = rows

    def chunks(self) -> tuple[Chunk, ...]:
        """All of it as chunks (the tail's rows become one; run it off the training
        thread: about 0.6 us a row)."""
        if not self.rows:
            return self.frozen
        chunk = Chunk.from_rows(self.rows)
        if chunk is None:
            raise ValueError("a history row holds a value that is not a number")
        return (*self.frozen, chunk)


class History(Sequence[MetricsSnapshot]):
    """The rows of a run (see the module docstring). Build one from rows or leave it empty.

    ``last_iteration`` is the last row's iteration (None when empty), kept as a plain
    attribute: the training loop reads it on every call. Rows handed out are copies.

    The chunks, their row ends and the tail are one tuple, replaced in a single assignment
    by every structural change (a block frozen, rows cut): another thread (a sink, the
    saver) or a signal handler (a SIGTERM handler that saves) always reads a consistent
    state, without a lock to deadlock on. Only the training thread changes a history.
    """

    def __init__(self, rows: Iterable[MetricsSnapshot] = ()) -> None:
        self._state: tuple[tuple[Chunk, ...], tuple[int, ...], list[MetricsSnapshot]] = (
            (),
            (),  # row count up to and including each chunk
            [],
        )
        self._freeze_at = _FREEZE_AT
        self._lazy: Callable[[], list[Chunk]] | None = None
        self._facts: tuple[int, MetricsSnapshot | None, MetricsSnapshot | None] = (0, None, None)
        self._known_best_last: dict[str, tuple[float | None, float | None]] = {}
        self.last_iteration: int | None = None
        self.extend(rows)

    @property
    def _chunks(self) -> tuple[Chunk, ...]:
        return self._state[0]

    @property
    def _tail(self) -> list[MetricsSnapshot]:
        return self._state[2]

    def __getstate__(self) -> dict[str, Any]:
        self._ensure()
        return dict(self.__dict__)

    def __copy__(self) -> History:
        self._ensure()
        twin = History()
        chunks, ends, tail = self._state
        twin._state = (chunks, ends, list(tail))  # chunks never change: shared
        twin.last_iteration = self.last_iteration
        return twin

    # ------------------------------------------------------------------ building
    @classmethod
    def from_chunks(cls, chunks: Iterable[Chunk]) -> History:
        history = cls()
        history._install(list(chunks), [])
        return history

    @classmethod
    def lazy(
        cls,
        n: int,
        last: MetricsSnapshot | None,
        diverged: MetricsSnapshot | None,
        load: Callable[[], list[Chunk]],
        best_last: dict[str, tuple[float | None, float | None]] | None = None,
    ) -> History:
        """A history of ``n`` rows whose chunks ``load()`` reads on first use; its length,
        last row, first diverged row (a NaN/inf loss) and ``best_last`` of the losses
        (when given) are known without reading them."""
        history = cls()
        history._lazy = load
        history._facts = (n, last, diverged)
        history._known_best_last = dict(best_last or {})
        history.last_iteration = last.iteration if last is not None else None
        return history

    def _ensure(self) -> None:
        load = self._lazy
        if load is not None:
            chunks = load()
            if self._lazy is load:
                self._lazy = None
                self._install(chunks, list(self._tail))

    def _install(self, chunks: list[Chunk], tail: list[MetricsSnapshot]) -> None:
        kept = tuple(c for c in chunks if c.n)
        ends = []
        total = 0
        for chunk in kept:
            total += chunk.n
            ends.append(total)
        self._state = (kept, tuple(ends), tail)
        self._refresh_last()

    def _refresh_last(self) -> None:
        chunks, _, tail = self._state
        if tail:
            self.last_iteration = tail[-1].iteration
        elif chunks:
            self.last_iteration = chunks[-1].iterations.at(chunks[-1].n - 1)
        else:
            self.last_iteration = None

    def _freeze(self, count: int) -> None:
        """Turn the tail's first ``count`` rows into a chunk; nothing while one of them
        holds a tensor not read yet (then again a little later)."""
        chunks, ends, tail = self._state
        chunk = Chunk.from_rows(tail[:count])
        if chunk is None:
            self._freeze_at = len(tail) + 256
            return
        self._freeze_at = _FREEZE_AT
        self._state = (chunks + (chunk,), ends + ((ends[-1] if ends else 0) + count,), tail[count:])

    def _parts(self) -> tuple[list[Chunk], list[MetricsSnapshot]]:
        """The chunks and tail rows now, taken together."""
        self._ensure()
        chunks, _, tail = self._state
        return list(chunks), list(tail)

    def snapshot(self) -> HistorySnapshot:
        """The history as it is now, for a save that writes it while logging goes on: the
        immutable chunks and the tail's row objects (tens of microseconds; rows in the
        tail are replaced, never changed in place, once logged and read)."""
        chunks, tail = self._parts()
        return HistorySnapshot(tuple(chunks), tuple(tail))

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        if self._lazy is not None:
            return self._facts[0]
        _, ends, tail = self._state
        return (ends[-1] if ends else 0) + len(tail)

    def __bool__(self) -> bool:
        return self.last_iteration is not None

    @property
    def is_loaded(self) -> bool:
        """False while a history loaded from a cache has not read its columns yet."""
        return self._lazy is None

    @overload
    def __getitem__(self, index: int) -> MetricsSnapshot: ...
    @overload
    def __getitem__(self, index: slice) -> list[MetricsSnapshot]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if self._lazy is not None and index in (-1, self._facts[0] - 1):
            last = self._facts[1]
            if last is not None:
                return copy(last)
        self._ensure()
        chunks, ends, tail = self._state
        n = (ends[-1] if ends else 0) + len(tail)
        index = _position(index, n, "history index out of range")
        frozen = ends[-1] if ends else 0
        if index >= frozen:
            return copy(tail[index - frozen])
        k, j = _locate(ends, index)
        return chunks[k].row(j)

    def __iter__(self) -> Iterator[MetricsSnapshot]:
        chunks, tail = self._parts()
        for chunk in chunks:
            yield from chunk.rows()
        for row in tail:
            yield copy(row)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History | list | tuple):
            return len(self) == len(other) and all(
                a == b for a, b in zip(self, other, strict=False)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<History: {len(self)} rows>"

    def column(self, name: str) -> list[Any]:
        """One field (or extra metric) for every row, ``None`` where absent."""
        chunks, tail = self._parts()
        out: list[Any] = []
        for chunk in chunks:
            out += chunk.named_column(name)
        if name in _ROW_FIELD_INDEX:
            out += map(attrgetter(name), tail)
        else:
            out += [(row.extra or {}).get(name) for row in tail]
        return out

    def extra_names(self) -> list[str]:
        """The extra metrics' names, in order of first appearance."""
        chunks, tail = self._parts()
        names: dict[str, None] = {}
        for chunk in chunks:
            names.update(dict.fromkeys(chunk.extras))
        for row in tail:
            if row.extra:
                names.update(dict.fromkeys(row.extra))
        return list(names)

    def first_nonfinite(self, names: Sequence[str] = LOSS_FIELDS) -> MetricsSnapshot | None:
        """The first row with a NaN or infinite value in one of ``names``."""
        if self._lazy is not None and tuple(names) == LOSS_FIELDS:
            diverged = self._facts[2]
            return copy(diverged) if diverged is not None else None
        chunks, tail = self._parts()
        for chunk in chunks:
            j = chunk.first_nonfinite(names)
            if j is not None:
                return chunk.row(j)
        for row in tail:
            for name in names:
                if name in _ROW_FIELD_INDEX:
                    value = getattr(row, name)
                else:
                    value = (row.extra or {}).get(name)
                if isinstance(value, float) and not math.isfinite(value):
                    return copy(row)
        return None

    def metric_names(self) -> list[str]:
        """The metrics some row has a value of: the guide's value fields, then the extra
        metrics in order of first appearance (the axes are not metrics)."""
        chunks, tail = self._parts()
        present: dict[str, None] = {}
        for chunk in chunks:
            for name, column in zip(ROW_FIELDS, chunk.fields, strict=True):
                if column is not None:
                    present[name] = None
        for row in tail:
            for name in ROW_FIELDS:
                if getattr(row, name) is not None:
                    present[name] = None
        fields = [n for n in ROW_FIELDS if n in present and n not in _AXIS_NAMES]
        return [*fields, *(n for n in self.extra_names() if n not in _ROW_FIELD_INDEX)]

    def best_last(self, name: str) -> tuple[float | None, float | None]:
        """The smallest finite value of a field or extra metric (NaN and infinities
        ignored) and its last value (any), each None when no row has one."""
        if self._lazy is not None and name in self._known_best_last:
            return self._known_best_last[name]
        index, values = self.floats(name)
        if not values:
            return None, None
        if math.isfinite(sum(values)):
            best: float | None = min(values)
        else:
            finite = [v for v in values if v - v == 0.0]
            best = min(finite) if finite else None
        last = values[-1]
        return best, (last if last - last == 0.0 else NonFinite(last))

    def floats(self, name: str) -> tuple[array | None, array]:
        """One field or extra metric as floats, read from the columns (no row objects):
        ``(rows, values)`` where ``rows[k]`` is the row of ``values[k]``, or ``rows`` is
        None when every row has a value. NaN and infinities are kept."""
        chunks, tail = self._parts()
        values = array("d")
        rows = array("q")
        sparse = False
        offset = 0
        for chunk in chunks:
            column = chunk.by_name(name)
            if column is None:
                sparse = True
            else:
                present = _float_values(column, chunk.n)
                if column.index is None:
                    rows.extend(range(offset, offset + chunk.n))
                else:
                    sparse = True
                    rows.extend(i + offset for i in column.index)
                values.extend(present)
            offset += chunk.n
        field_index = _ROW_FIELD_INDEX.get(name)
        for k, row in enumerate(tail):
            value: Any = (
                getattr(row, name) if field_index is not None else (row.extra or {}).get(name)
            )
            if type(value) in _NUMBER_KINDS:
                rows.append(offset + k)
                values.append(float(value))
            else:
                sparse = True
        return (rows if sparse else None), values

    def index_of(self, iteration: int) -> int:
        """Where a row of ``iteration`` is or would go (rows are in iteration order)."""
        chunks, tail = self._parts()
        lo = 0
        for chunk in chunks:
            if iteration <= chunk.iterations.at(chunk.n - 1):
                return lo + _bisect_column(chunk.iterations, chunk.n, iteration)
            lo += chunk.n
        return lo + bisect.bisect_left(tail, iteration, key=attrgetter("iteration"))

    def to_numpy(self, name: str) -> Any:
        """One field or extra metric as a numpy array: ``iteration`` and ``gradient_step``
        as int64, anything else as float64 with NaN where a row has no value. Built from
        the columns without a row object (numpy is imported here, on first use)."""
        import numpy as np

        index = _ROW_FIELD_INDEX.get(name)
        integer = name in ("iteration", "gradient_step")
        dtype = np.int64 if integer else np.float64
        chunks, tail = self._parts()
        parts = []
        for chunk in chunks:
            column = chunk.fields[index] if index is not None else chunk.extras.get(name)
            parts.append(_numpy_column(np, column, chunk.n, dtype))
        if tail:
            if index is not None:
                values = [getattr(row, name) for row in tail]
            else:
                values = [(row.extra or {}).get(name) for row in tail]
            parts.append(np.array(values, dtype=dtype))
        if not parts:
            return np.empty(0, dtype=dtype)
        return np.concatenate(parts)

    @property
    def nbytes(self) -> int:
        """Bytes of the chunks' arrays (the tail's row objects not counted)."""
        return sum(chunk.nbytes for chunk in self._parts()[0])

    # ------------------------------------------------------------------ changing
    def append(self, row: MetricsSnapshot) -> None:
        if self._lazy is not None:
            self._ensure()
        tail = self._state[2]
        tail.append(row)
        self.last_iteration = row.iteration
        if len(tail) >= self._freeze_at:
            self._freeze(CHUNK_ROWS)

    def extend(self, rows: Iterable[MetricsSnapshot]) -> None:
        for row in rows:
            self.append(row)

    def __setitem__(self, index: int, row: MetricsSnapshot) -> None:
        self._ensure()
        chunks, ends, tail = self._state
        index = _position(index, len(self), "history assignment index out of range")
        frozen = ends[-1] if ends else 0
        if index >= frozen:
            tail[index - frozen] = row
        else:
            k, j = _locate(ends, index)
            rows = chunks[k].rows()
            rows[j] = row
            self._replace_chunk(k, rows)
        self._refresh_last()

    def insert(self, index: int, row: MetricsSnapshot) -> None:
        self._ensure()
        chunks, ends, tail = self._state
        frozen = ends[-1] if ends else 0
        if index >= frozen:
            grown = list(tail)
            grown.insert(index - frozen, row)
            self._state = (chunks, ends, grown)
        else:
            k, j = _locate(ends, max(index, 0))
            rows = chunks[k].rows()
            rows.insert(j, row)
            self._replace_chunk(k, rows)
        self._refresh_last()

    def _replace_chunk(self, k: int, rows: list[MetricsSnapshot]) -> None:
        chunk = Chunk.from_rows(rows)
        if chunk is None:
            raise ValueError("history: a row holds a value that is not a number")
        chunks = list(self._chunks)
        chunks[k] = chunk
        self._install(chunks, self._tail)

    def truncate(self, start: int) -> list[MetricsSnapshot]:
        """Remove rows ``start`` and later; returns them."""
        self._ensure()
        n = len(self)
        start = max(0, min(start, n))
        removed = self[start:]
        chunks, ends, tail = self._state
        frozen = ends[-1] if ends else 0
        if start >= frozen:
            self._state = (chunks, ends, tail[: start - frozen])
        else:
            k, j = _locate(ends, start)
            self._install(list(chunks[:k]), chunks[k].rows()[:j])
        self._refresh_last()
        return removed

    def __delitem__(self, index: slice) -> None:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("history: only a trailing slice can be deleted (del h[k:])")
        start, stop, _ = index.indices(len(self))
        if stop != len(self):
            raise TypeError("history: only a trailing slice can be deleted (del h[k:])")
        self.truncate(start)

    def clear(self) -> None:
        self._lazy = None
        self._install([], [])


def _position(index: int, n: int, error: str) -> int:
    """``index`` counted from the start (a negative one from the end), checked."""
    if index < 0:
        index += n
    if not 0 <= index < n:
        raise IndexError(error)
    return index


def _locate(ends: tuple[int, ...], index: int) -> tuple[int, int]:
    """(chunk, row in it) of history row ``index`` (a frozen one)."""
    k = bisect.bisect_right(ends, index)
    return k, index - (ends[k - 1] if k else 0)


def _numpy_column(np: Any, column: Column | None, n: int, dtype: Any) -> Any:
    if column is None:
        return np.full(n, np.nan, dtype=dtype)
    if column.kind == "range":
        if not column.step:
            return np.full(n, column.start, dtype=dtype)
        return np.arange(column.start, column.start + column.step * n, column.step, dtype=dtype)
    if column.kind == "list":
        values = np.array(column.present(n), dtype=dtype)
    else:
        stored = np.float64 if column.values.itemsize == 8 and _is_float(column) else np.int64
        values = np.frombuffer(column.values, dtype=stored).astype(dtype)
    if column.index is None:
        return values
    out = np.full(n, np.nan, dtype=dtype)
    out[np.frombuffer(column.index, dtype=np.int64)] = values
    return out


def _is_float(column: Column) -> bool:
    values = column.values
    code = values.typecode if isinstance(values, array) else values.format
    return code == "d"


_NUMBER_KINDS = frozenset({int, float, NonFinite})


def _float_values(column: Column, n: int) -> array:
    """The values a column holds (present rows only), as float64."""
    if column.kind == "range":
        if not column.step:
            return array("d", [float(column.start)]) * n
        stop = column.start + column.step * n
        return array("d", map(float, range(column.start, stop, column.step)))
    if column.kind == "array" and _is_float(column):
        out = array("d")
        out.frombytes(memoryview(column.values).cast("B"))
        return out
    return array("d", map(float, column.values))


def _bisect_column(column: Column, n: int, value: int) -> int:
    if column.kind == "range":
        if column.step <= 0:
            return 0 if value <= column.start else n
        return max(0, min(n, -((column.start - value) // column.step)))
    return bisect.bisect_left(column.values, value)


def as_history(rows: Any) -> History:
    """``rows`` as a :class:`History` (a History is kept as is, a list is copied in)."""
    if isinstance(rows, History):
        return rows
    if rows is None:
        return History()
    return History(rows)
