"""A week-long run: columnar history, background saves, the columnar cache, DataFrames."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cs336_basics.tracking.codec as codec
import cs336_basics.tracking.history as history_module
from cs336_basics import ExperimentAnalyzer, ExperimentConfig, ExperimentTracker
from cs336_basics.experiment_log import load_experiment_log
from cs336_basics.tracking.cache import cache_path, read_cache
from cs336_basics.tracking.codec import decode_log, encode_log
from cs336_basics.tracking.history import History
from cs336_basics.tracking.records import (
    ExperimentLog,
    MetricsSnapshot,
    apply_eval,
    apply_metrics,
)
from cs336_basics.tracking.storage import load_run

HERE = Path(__file__).resolve().parent


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))  # NaN equal to NaN; 1 and 1.0 alike (see below)
    return value


def _same(a, b) -> bool:
    """Rows equal, NaN equal to NaN. A column that mixes ints and floats is stored as
    floats (as the tracker, which logs floats, never makes one): compared as floats."""
    if isinstance(a, list) or isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return _plain(a.__dict__) == _plain(b.__dict__)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 4 rows, so a few rows cross many chunk boundaries."""
    monkeypatch.setattr(history_module, "CHUNK_ROWS", 4)
    monkeypatch.setattr(history_module, "_FREEZE_AT", 8)


# ---------------------------------------------------------------------------------------
# The columnar history behaves as the list of rows it replaced.


def _reference_metrics(rows: list[MetricsSnapshot], superseded: list, row: MetricsSnapshot):
    """The history rules of records.py, written again on a plain list."""
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
        assert _same(list(log.metrics_history), rows)
        assert _same(list(log.superseded_history), superseded)
        assert len(log.metrics_history) == len(rows)
        assert log.last_iteration == (rows[-1].iteration if rows else None)
        for name in ("iteration", "train_loss", "val_loss", "g"):
            expected = [getattr(r, name) if name != "g" else (r.extra or {}).get("g") for r in rows]
            assert _plain({"v": log.metrics_history.column(name)}) == _plain({"v": expected})
        # The document holds the same rows, and reads back as them.
        loaded, _ = decode_log(encode_log(log, 1), "mem.json")
        assert _same(list(loaded.metrics_history), rows)
        assert _same(list(loaded.superseded_history), superseded)
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
    assert history._chunks == [] and len(history) == 20  # nothing frozen past the tensor
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


# ---------------------------------------------------------------------------------------
# Background saves.


def _tracker(tmp_path: Path, name: str = "week") -> ExperimentTracker:
    tracker = ExperimentTracker(ExperimentConfig(experiment_name=name), log_dir=tmp_path)
    tracker.start()
    return tracker


def _slow_chunks(monkeypatch, gate: threading.Event) -> None:
    """Hold every background document write until ``gate`` is set."""
    real = codec.encode_chunk

    def held(chunk, pause=None):
        gate.wait(10)
        return real(chunk, pause)

    monkeypatch.setattr(codec, "encode_chunk", held)


def test_save_returns_before_the_document_is_written_and_nothing_is_missing(tmp_path, monkeypatch):
    tracker = _tracker(tmp_path)
    for i in range(5000):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.save(wait=True)
    gate = threading.Event()
    _slow_chunks(monkeypatch, gate)
    for i in range(5000, 9000):
        tracker.log_metrics(iteration=i, train_loss=0.5)
    started = time.perf_counter()
    tracker.save()
    took = time.perf_counter() - started
    assert tracker.health()["save"] == "writing"
    tracker.log_metrics(iteration=9000, train_loss=0.25)  # logging goes on meanwhile
    tracker.flush()
    # The document on disk is still the old one; loading reads it, the kept journal and
    # the live journal: every row, once.
    assert len(orjson.loads(tracker.path.read_bytes())["metrics_history"]) == 5000
    assert [p.name for p in tmp_path.glob(".*.kept-*")] != []
    loaded = load_experiment_log(tracker.path)
    assert loaded.metrics_history.column("iteration") == list(range(9001))
    gate.set()
    tracker.save(wait=True)
    assert len(orjson.loads(tracker.path.read_bytes())["metrics_history"]) == 9001
    assert list(tmp_path.glob(".*.kept-*")) == []  # the document holds them now
    assert took < 1.0  # the write was held for the whole wait: save() did not wait for it
    tracker.finish()


def test_saves_queue_behind_a_slow_write_and_the_newest_wins(tmp_path, monkeypatch):
    tracker = _tracker(tmp_path)
    gate = threading.Event()
    _slow_chunks(monkeypatch, gate)
    for k in range(5):
        for i in range(k * 100, (k + 1) * 100):
            tracker.log_metrics(iteration=i, train_loss=1.0)
        tracker.save()
    assert load_experiment_log(tracker.path).last_iteration == 499  # kept chain complete
    gate.set()
    tracker.save(wait=True)
    doc = orjson.loads(tracker.path.read_bytes())
    assert doc["save_id"] == 5 and len(doc["metrics_history"]) == 500
    tracker.finish()
    assert load_experiment_log(tracker.path).last_iteration == 499


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4, 5])
def test_sigkill_during_a_background_save_loses_nothing_flushed(tmp_path, seed):
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "crash_child.py"), "bgsave", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + 60
    while sum(line.startswith("SAVE") for line in lines) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.0, 0.5))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    flushed = [int(line.split()[1]) for line in list(lines) if line.startswith("FLUSHED")]
    path = Path(next(line for line in lines if line.startswith("PATH")).split(" ", 1)[1])
    assert flushed
    # Killed inside a save: its kept journal is still there (a save is always under way).
    assert list(tmp_path.glob(".*.kept-*"))
    orjson.loads(path.read_bytes())  # the document is whole (old or new), never torn
    log = load_experiment_log(path)
    iterations = log.metrics_history.column("iteration")
    assert iterations == list(range(len(iterations)))  # every row once, in order
    assert iterations[-1] >= max(flushed)
    assert log.status == "unfinished"
    # A resumed run goes on from there and tidies the kept journals.
    resumed = ExperimentTracker(ExperimentConfig(experiment_name="crashy"), resume=path)
    resumed.start()
    assert list(tmp_path.glob(".*.kept-*")) == []
    resumed.log_metrics(iteration=len(iterations), train_loss=0.1)
    resumed.finish()
    assert load_experiment_log(path).last_iteration == len(iterations)


# ---------------------------------------------------------------------------------------
# The columnar cache.


def _finished_run(tmp_path: Path, rows: int = 3000) -> Path:
    tracker = _tracker(tmp_path, "cached")
    for i in range(rows):
        tracker.log_metrics(iteration=i, train_loss=3.0 - i * 1e-4, grad_norm=float(i % 7))
        if i % 500 == 0:
            tracker.log_eval(iteration=i, val_loss=float("nan") if i == 1000 else 2.0)
    tracker.finish(notes="cached run")
    return tracker.path


def test_a_saved_run_loads_from_its_cache_as_from_its_document(tmp_path, monkeypatch):
    path = _finished_run(tmp_path)
    assert cache_path(path).exists()
    assert read_cache(path) is not None
    from_cache, save_id = load_run(path)
    monkeypatch.setenv("CS336_NO_CACHE", "1")
    parsed, parsed_id = load_run(path)
    assert save_id == parsed_id
    assert _same(list(from_cache.metrics_history), list(parsed.metrics_history))
    for name in ("notes", "status", "best_val_loss", "final_train_loss", "run_id", "config"):
        assert repr(getattr(from_cache, name)) == repr(getattr(parsed, name))
    assert from_cache.display_status == parsed.display_status == "diverged"
    assert isinstance(from_cache.metrics_history._chunks[0].fields[3].values, memoryview)


@pytest.mark.parametrize(
    "damage",
    ["truncate", "garbage", "empty", "magic", "edited_document", "header_only"],
)
def test_a_stale_or_corrupt_cache_is_ignored_and_rebuilt(tmp_path, damage):
    path = _finished_run(tmp_path, rows=2000)
    cache = cache_path(path)
    good = cache.read_bytes()
    if damage == "truncate":
        cache.write_bytes(good[: len(good) - 100])
    elif damage == "garbage":
        cache.write_bytes(os.urandom(len(good)))
    elif damage == "empty":
        cache.write_bytes(b"")
    elif damage == "magic":
        cache.write_bytes(b"X" + good[1:])
    elif damage == "header_only":
        cache.write_bytes(good[:40])
    else:  # the document changed under the cache (edited by hand): same length, new value
        data = path.read_bytes().replace(b'"notes":"cached run"', b'"notes":"edited run"')
        time.sleep(0.01)
        path.write_bytes(data)
    if damage != "edited_document":
        assert read_cache(path) is None
    log = load_experiment_log(path)  # read from the document, and the cache rebuilt
    assert len(log.metrics_history) == 2000
    assert log.notes == ("edited run" if damage == "edited_document" else "cached run")
    assert read_cache(path) is not None
    assert load_experiment_log(path).notes == log.notes


def test_a_cache_is_never_trusted_over_another_document(tmp_path):
    first = _finished_run(tmp_path / "a")
    second = _finished_run(tmp_path / "b", rows=10)
    # A cache copied beside another document describes another file: ignored.
    (tmp_path / "b" / cache_path(second).name).write_bytes(cache_path(first).read_bytes())
    assert read_cache(second) is None
    assert len(load_experiment_log(second).metrics_history) == 10


def test_dashboard_style_reads_write_no_cache(tmp_path, monkeypatch):
    path = _finished_run(tmp_path)
    cache_path(path).unlink()
    log, _ = load_run(path, cache=False)
    assert len(log.metrics_history) == 3000 and not cache_path(path).exists()


# ---------------------------------------------------------------------------------------
# Many runs, DataFrames.


def _sweep(tmp_path: Path, n: int) -> None:
    for k in range(n):
        tracker = ExperimentTracker(
            ExperimentConfig(experiment_name=f"lr{k}", max_learning_rate=10.0**-k),
            log_dir=tmp_path,
        )
        tracker.start()
        for i in range(50):
            tracker.log_metrics(iteration=i, train_loss=3.0 / (1 + i + k))
        tracker.log_eval(iteration=49, val_loss=2.0 + k)
        tracker.finish()


def test_load_all_parses_in_parallel_and_loads_the_same_runs(tmp_path):
    _sweep(tmp_path, 6)
    for cache in tmp_path.glob(".*.columns"):
        cache.unlink()
    parallel = ExperimentAnalyzer(tmp_path)
    parallel.load_all(quiet=True, workers=2)
    assert len(list(tmp_path.glob(".*.columns"))) == 6  # the workers left caches
    for cache in tmp_path.glob(".*.columns"):
        cache.unlink()
    serial = ExperimentAnalyzer(tmp_path)
    serial.load_all(quiet=True, workers=1)
    assert list(parallel.logs) == list(serial.logs)
    for key in serial.logs:
        assert _same(
            list(parallel.logs[key].metrics_history), list(serial.logs[key].metrics_history)
        )
        assert parallel.logs[key].best_val_loss == serial.logs[key].best_val_loss


def test_experiment_log_to_pandas(tmp_path):
    path = _finished_run(tmp_path, rows=1200)
    frame = load_experiment_log(path).to_pandas()
    assert list(frame.columns)[:8] == [
        "iteration",
        "gradient_step",
        "wallclock_time",
        "train_loss",
        "val_loss",
        "learning_rate",
        "tokens_per_sec",
        "iter_time_ms",
    ]
    assert "grad_norm" in frame.columns and len(frame) == 1200
    assert str(frame["iteration"].dtype) == "int64" and str(frame["val_loss"].dtype) == "float64"
    assert frame["val_loss"].notna().sum() == 2  # 0 and 500 (1000 is NaN: diverged)
    assert math.isnan(frame.loc[1000, "val_loss"])
    assert frame.loc[13, "grad_norm"] == 6.0 and frame.loc[13, "train_loss"] == 3.0 - 13e-4


def test_analyzer_to_pandas_is_one_long_frame(tmp_path):
    _sweep(tmp_path, 3)
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    frame = analyzer.to_pandas()
    assert len(frame) == 150
    assert list(frame.columns[:4]) == ["run", "run_id", "experiment_name", "max_learning_rate"]
    assert sorted(frame["run"].unique()) == ["lr0", "lr1", "lr2"]
    best = frame.groupby("max_learning_rate")["val_loss"].min()
    assert best.to_dict() == {0.01: 4.0, 0.1: 3.0, 1.0: 2.0}
    assert list(analyzer.to_pandas(["lr1"], config=False).columns[:3]) == [
        "run",
        "run_id",
        "experiment_name",
    ]
    with pytest.raises(TypeError, match="config"):
        analyzer.to_pandas(config="lr")


def test_to_pandas_without_pandas_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"cs336-basics\[pandas\]"):
        ExperimentLog(config=ExperimentConfig()).to_pandas()


def test_a_log_loaded_from_its_cache_pickles_and_copies(tmp_path):
    import copy
    import pickle

    path = _finished_run(tmp_path, rows=500)
    log = load_experiment_log(path)
    assert isinstance(log.metrics_history._chunks[0].fields[2].values, memoryview)
    for clone in (pickle.loads(pickle.dumps(log)), copy.deepcopy(log)):
        assert _same(list(clone.metrics_history), list(log.metrics_history))
        assert clone.metrics_history.column("grad_norm") == log.metrics_history.column("grad_norm")
