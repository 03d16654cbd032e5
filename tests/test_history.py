"""``core/history``: the columnar history of a run behaves as the list of rows it replaced
(the rules of ``core/log``), hands out copies, freezes chunks off the training thread, and
keeps a row small."""

from __future__ import annotations

import pytest
from helpers import finished_run, plain, same_rows, started_tracker
from hypothesis import given, settings
from hypothesis import strategies as st

import cs336_basics.core.history as history_module
from cs336_basics import ExperimentConfig, ExperimentTracker
from cs336_basics.core.history import History
from cs336_basics.core.log import ExperimentLog, apply_eval, apply_metrics
from cs336_basics.core.row import MetricsSnapshot
from cs336_basics.experiment_log import load_experiment_log
from cs336_basics.store.codec import decode_log, encode_log


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 4 rows, so a few rows cross many chunk boundaries."""
    monkeypatch.setattr(history_module, "CHUNK_ROWS", 4)
    monkeypatch.setattr(history_module, "_FREEZE_AT", 8)


def _reference_metrics(rows: list[MetricsSnapshot], superseded: list, row: MetricsSnapshot):
    """The history rules of core/log.py, written again on a plain list."""
    if not rows or row.iteration > rows[-1].iteration:
        rows.append(row)
        return
    last = rows[-1]
    if row.iteration == last.iteration and not last.has_train_metrics:
        row.val_loss = last.val_loss if row.val_loss is None else row.val_loss
        if last.extra:
            row.extra = {**last.extra, **(row.extra or {})}
        rows[-1] = row
        return
    cut = next(k for k, r in enumerate(rows) if r.iteration >= row.iteration)
    superseded.extend(rows[cut:])
    del rows[cut:]
    rows.append(row)


def _reference_eval(rows: list[MetricsSnapshot], iteration: int, val: float, extra):
    for row in rows:
        if row.iteration == iteration:
            if val is not None:
                row.val_loss = val
            if extra:
                row.extra = {**(row.extra or {}), **extra}
            return
    row = MetricsSnapshot(iteration, 1, 0.5, None, val, extra=dict(extra) if extra else None)
    rows.append(row)
    rows.sort(key=lambda r: r.iteration)


values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(2**63), 2**63 - 1),  # (orjson, like the format, stops at 64 bits)
)


operations = st.lists(
    st.tuples(
        st.sampled_from(["metrics", "metrics", "metrics", "eval", "back"]),
        st.integers(0, 60),
        values,
        st.one_of(st.none(), st.dictionaries(st.sampled_from(["g", "h"]), values, max_size=2)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_history_follows_the_list_rules(ops):
    history_module.CHUNK_ROWS, history_module._FREEZE_AT = 4, 8
    try:
        log = ExperimentLog(config=ExperimentConfig())
        rows: list[MetricsSnapshot] = []
        superseded: list[MetricsSnapshot] = []
        last = -1
        for kind, number, value, extra in ops:
            extra = {k: v for k, v in (extra or {}).items() if v is not None} or None
            if kind == "eval":
                apply_eval(log, number, 1, 0.5, value, None, extra)
                _reference_eval(rows, number, value, extra)
                continue
            iteration = last + 1 + number % 3 if kind == "metrics" else number % (last + 2)
            last = max(last, iteration) if kind == "metrics" else iteration
            fields = (iteration, iteration + 1, float(iteration), value, None, 1e-3, None, 1.0)
            apply_metrics(log, MetricsSnapshot(*fields, extra))
            _reference_metrics(rows, superseded, MetricsSnapshot(*fields, extra))
            if number % 7 == 0:
                log.metrics_history.snapshot()  # a save freezes the tail at any moment
        assert same_rows(list(log.metrics_history), rows)
        assert same_rows(list(log.superseded_history), superseded)
        assert len(log.metrics_history) == len(rows)
        assert log.last_iteration == (rows[-1].iteration if rows else None)
        for name in ("iteration", "train_loss", "val_loss", "g"):
            expected = [getattr(r, name) if name != "g" else (r.extra or {}).get("g") for r in rows]
            assert plain({"v": log.metrics_history.column(name)}) == plain({"v": expected})
        # The document holds the same rows, and reads back as them.
        loaded, _ = decode_log(encode_log(log, 1), "mem.json")
        assert same_rows(list(loaded.metrics_history), rows)
        assert same_rows(list(loaded.superseded_history), superseded)
    finally:
        history_module.CHUNK_ROWS, history_module._FREEZE_AT = 4096, 8192


def test_rows_read_from_chunks_are_copies(small_chunks):
    history = History(MetricsSnapshot(i, i + 1, 0.0, 1.0) for i in range(20))
    assert len(history._chunks) >= 2
    row = history[1]
    row.train_loss = 9.0
    assert history[1].train_loss == 1.0
    history[1] = row
    assert history[1].train_loss == 9.0 and history == [
        MetricsSnapshot(i, i + 1, 0.0, 9.0 if i == 1 else 1.0) for i in range(20)
    ]
    assert history.index_of(7) == 7 and history.index_of(100) == 20
    with pytest.raises(TypeError, match="trailing slice"):
        del history[2:5]


def test_a_row_holding_a_tensor_is_not_frozen_until_read(small_chunks):
    class FakeTensor:
        def __float__(self):  # what a freeze must never call (a device sync)
            raise AssertionError("read on the training thread")

    history = History()
    waiting = MetricsSnapshot(0, 1, 0.0, FakeTensor())
    history.append(waiting)
    for i in range(1, 20):
        history.append(MetricsSnapshot(i, i + 1, 0.0, 1.0))
    assert history._chunks == () and len(history) == 20  # nothing frozen past the tensor
    waiting.train_loss = 2.5  # the journal thread read it
    for i in range(20, 300):
        history.append(MetricsSnapshot(i, i + 1, 0.0, 1.0))
    assert history._chunks and history[0].train_loss == 2.5 and len(history) == 300


def test_memory_per_row_is_small():
    history = History(
        MetricsSnapshot(i, i + 1, i * 0.1, 3.0 - i * 1e-6, None, 1e-3, 1e5, 2.0)
        for i in range(20_000)
    )
    history.snapshot()
    # wallclock, train loss, lr, tokens/s, iter ms: 8 bytes each; iteration and gradient
    # step are arithmetic runs (two numbers a chunk); val_loss is absent (nothing).
    assert history.nbytes / len(history) <= 41


def test_rows_read_from_the_tail_are_copies_too(tmp_path):
    tracker = started_tracker(tmp_path, "copies")
    for i in range(10):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    history = tracker.log.metrics_history
    for row in (history[-1], history[5], history[2:4][0], next(iter(history))):
        row.train_loss = 99.0
    assert set(history.column("train_loss")) == {1.0}
    tracker.finish()
    assert set(load_experiment_log(tracker.path).metrics_history.column("train_loss")) == {1.0}


def test_a_shallow_copy_of_a_history_is_its_own(small_chunks):
    import copy

    history = History(MetricsSnapshot(i, i + 1, 0.0, 1.0) for i in range(10))
    twin = copy.copy(history)
    twin.append(MetricsSnapshot(10, 11, 0.0, 1.0))
    assert len(history) == 10 and history.last_iteration == 9 and len(twin) == 11


def test_a_lazy_history_of_a_run_rewritten_since_says_so(tmp_path):
    from cs336_basics.core.errors import LogFormatError

    path = finished_run(tmp_path, rows=100)
    log = load_experiment_log(path)
    assert not log.metrics_history.is_loaded and len(log.metrics_history) == 100
    resumed = ExperimentTracker(ExperimentConfig(experiment_name="cached"), resume=path)
    resumed.log_metrics(iteration=100, train_loss=0.5)
    resumed.finish()
    with pytest.raises(LogFormatError, match="changed on disk since it was loaded"):
        list(log.metrics_history)
    assert len(load_experiment_log(path).metrics_history) == 101
