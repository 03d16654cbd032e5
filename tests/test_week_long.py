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
from helpers import GUIDE_COLUMNS, requires
from hypothesis import given, settings
from hypothesis import strategies as st

import cs336_basics.core.history as history_module
import cs336_basics.store.codec as codec
from cs336_basics import ExperimentAnalyzer, ExperimentConfig, ExperimentTracker
from cs336_basics.core.history import History
from cs336_basics.core.log import ExperimentLog, apply_eval, apply_metrics
from cs336_basics.core.row import MetricsSnapshot
from cs336_basics.experiment_log import load_experiment_log
from cs336_basics.store.cache import cache_path, read_cache
from cs336_basics.store.codec import decode_log, encode_log
from cs336_basics.store.load import load_run

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
    loaded = load_run(path)
    from_cache, save_id = loaded.log, loaded.save_id
    monkeypatch.setenv("CS336_NO_CACHE", "1")
    loaded = load_run(path)
    parsed, parsed_id = loaded.log, loaded.save_id
    assert save_id == parsed_id
    assert _same(list(from_cache.metrics_history), list(parsed.metrics_history))
    for name in ("notes", "status", "best_val_loss", "final_train_loss", "run_id", "config"):
        assert repr(getattr(from_cache, name)) == repr(getattr(parsed, name))
    assert from_cache.display_status == parsed.display_status == "diverged"
    assert isinstance(from_cache.metrics_history._chunks[0].fields[3].values, memoryview)
    # A listing reads the header only: length, last row and divergence without the columns.
    monkeypatch.delenv("CS336_NO_CACHE")
    listed = load_run(path).log
    assert len(listed.metrics_history) == 3000 and listed.last_iteration == 2999
    assert listed.diverged_at == 1000 and listed.tokens_seen == parsed.tokens_seen
    assert not listed.metrics_history.is_loaded


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
    log = load_run(path, cache=False).log
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


@requires("pandas")
def test_experiment_log_to_pandas(tmp_path):
    path = _finished_run(tmp_path, rows=1200)
    frame = load_experiment_log(path).to_pandas()
    assert list(frame.columns)[:8] == GUIDE_COLUMNS
    assert "grad_norm" in frame.columns and len(frame) == 1200
    assert str(frame["iteration"].dtype) == "int64" and str(frame["val_loss"].dtype) == "float64"
    assert frame["val_loss"].notna().sum() == 2  # 0 and 500 (1000 is NaN: diverged)
    assert math.isnan(frame.loc[1000, "val_loss"])
    assert frame.loc[13, "grad_norm"] == 6.0 and frame.loc[13, "train_loss"] == 3.0 - 13e-4


@requires("pandas")
def test_analyzer_to_pandas_is_one_long_frame(tmp_path):
    _sweep(tmp_path, 3)
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    frame = analyzer.to_pandas()
    assert len(frame) == 150
    columns = ["run", "run_id", "experiment_name", "config.max_learning_rate"]
    assert list(frame.columns[:4]) == columns
    assert sorted(frame["run"].unique()) == ["lr0", "lr1", "lr2"]
    best = frame.groupby("config.max_learning_rate")["val_loss"].min()
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
    assert not log.metrics_history.is_loaded  # (pickling reads the columns first)
    for clone in (pickle.loads(pickle.dumps(log)), copy.deepcopy(log)):
        assert _same(list(clone.metrics_history), list(log.metrics_history))
        assert clone.metrics_history.column("grad_norm") == log.metrics_history.column("grad_norm")


# ---------------------------------------------------------------------------------------
# Found in review: each of these failed before its fix.


def test_an_eval_with_a_nan_extra_survives_a_crash_and_a_resume(tmp_path):
    tracker = _tracker(tmp_path, "nan-extra")
    for i in range(10_000):  # the eval below lands in a frozen chunk
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.save(wait=True)
    tracker.log_eval(iteration=100, val_loss=0.7, accuracy=float("inf"))
    tracker.log_eval(iteration=9999, val_loss=0.5, accuracy=float("nan"))
    tracker.flush()
    tracker.close()  # the evals are in the journal only
    log = load_experiment_log(tracker.path)
    assert log.metrics_history[100].val_loss == 0.7
    assert log.metrics_history[100].extra == {"accuracy": math.inf}
    assert log.metrics_history[9999].val_loss == 0.5
    assert math.isnan(log.metrics_history[9999].extra["accuracy"])
    resumed = ExperimentTracker(ExperimentConfig(experiment_name="nan-extra"), resume=tracker.path)
    resumed.start()
    resumed.finish()
    assert load_experiment_log(tracker.path).metrics_history[100].val_loss == 0.7


def test_a_reader_racing_the_background_saver_gets_every_row_once(tmp_path, monkeypatch):
    import cs336_basics.store.load as loader

    tracker = _tracker(tmp_path, "race")
    for i in range(1000):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.save(wait=True)
    for i in range(1000, 2000):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    gate = threading.Event()
    _slow_chunks(monkeypatch, gate)
    tracker.save()  # document 2 is being written; kept journal 1 holds rows 1000-1999
    for i in range(2000, 2100):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.flush()
    real = loader.read_journal_files

    def journals_then_the_saver_lands(files):
        parts = real(files)
        gate.set()
        tracker._saves.saver.wait()  # document 2 lands and kept journal 1 goes, mid-load
        return parts

    monkeypatch.setattr(loader, "read_journal_files", journals_then_the_saver_lands)
    problems: list[str] = []
    log = load_run(tracker.path, on_problem=problems.append).log
    assert log.metrics_history.column("iteration") == list(range(2100)) and problems == []
    tracker.close()


def test_runs_loaded_from_caches_hold_no_open_file(tmp_path):
    _sweep(tmp_path, 8)
    fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    before = fds()
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    for log in analyzer.logs.values():
        assert log.metrics_history.column("iteration") == list(range(50))
    assert fds() == before


@pytest.mark.parametrize("where", ["header_length", "data_byte"])
def test_a_cache_damaged_inside_is_never_used(tmp_path, where):
    path = _finished_run(tmp_path, rows=3000)
    cache = cache_path(path)
    raw = bytearray(cache.read_bytes())
    if where == "header_length":
        raw[16:24] = (2**62).to_bytes(8, "little")  # what a flipped bit can make of it
    else:
        raw[-5] ^= 0xFF  # one value in the data section
    cache.write_bytes(bytes(raw))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    log = analyzer.logs["cached"]
    assert log.metrics_history.column("train_loss")[-1] == 3.0 - 2999 * 1e-4  # the document's


def test_a_failing_background_save_never_raises_into_the_loop(tmp_path, monkeypatch):
    import errno

    import cs336_basics.runtime.journal_writer as journal_module
    import cs336_basics.store.fileio as storage

    tracker = _tracker(tmp_path, "full")
    for i in range(100):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.save(wait=True)

    def enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "_write", enospc)  # the disk fills up
    monkeypatch.setattr(storage.os, "replace", enospc)
    for i in range(100, 200):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    assert tracker.save() == tracker.path  # no exception in the training loop
    assert tracker.health()["save"] == "failed"
    with pytest.raises(OSError) as raised:
        tracker.save(wait=True)  # asked to wait: then it says so
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    tracker.finish()
    assert load_experiment_log(tracker.path).metrics_history.column("iteration") == list(range(200))


def test_rows_read_from_the_tail_are_copies_too(tmp_path):
    tracker = _tracker(tmp_path, "copies")
    for i in range(10):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    history = tracker.log.metrics_history
    for row in (history[-1], history[5], history[2:4][0], next(iter(history))):
        row.train_loss = 99.0
    assert set(history.column("train_loss")) == {1.0}
    tracker.finish()
    assert set(load_experiment_log(tracker.path).metrics_history.column("train_loss")) == {1.0}


def test_save_after_close_says_how_to_go_on(tmp_path):
    tracker = _tracker(tmp_path, "closed")
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.close()
    with pytest.raises(RuntimeError, match=r"save\(\): this tracker was closed.*resume="):
        tracker.save()


def test_temporary_files_of_a_killed_save_are_removed_on_resume(tmp_path):
    tracker = _tracker(tmp_path, "temps")
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.save(wait=True)
    tracker.close()
    dead = 2**22 + 12345  # above the default pid_max: never a live process
    stem = tracker.path.stem
    leftovers = [
        tmp_path / f".{stem}.json.tmp-{dead}-1",
        tmp_path / f".{stem}.columns.tmp-{dead}-1",
        tmp_path / f".{stem}.jsonl.tmp-{dead}",
    ]
    alive = tmp_path / f".{stem}.json.tmp-{os.getpid()}-7"
    for leftover in (*leftovers, alive):
        leftover.write_bytes(b"{")
    resumed = ExperimentTracker(ExperimentConfig(experiment_name="temps"), resume=tracker.path)
    resumed.start()
    assert [p for p in leftovers if p.exists()] == [] and alive.exists()
    resumed.finish()


def test_ints_and_floats_mixed_in_a_column_keep_their_types(tmp_path):
    rows = [
        MetricsSnapshot(
            i, i + 1, 0 if i == 0 else i * 0.5, extra={"tokens": 2**60 + 1 if i else 0.5}
        )
        for i in range(5000)
    ]
    log = ExperimentLog(config=ExperimentConfig(), metrics_history=rows)
    loaded, _ = decode_log(encode_log(log, 1), "mem.json")
    assert type(loaded.metrics_history[0].wallclock_time) is int
    assert loaded.metrics_history[7].extra["tokens"] == 2**60 + 1
    assert loaded.metrics_history[0].extra["tokens"] == 0.5


@requires("pandas")
def test_analyzer_to_pandas_refuses_a_metric_named_like_a_run_column(tmp_path):
    tracker = _tracker(tmp_path, "clash")
    tracker.log_metrics(iteration=0, train_loss=1.0, run_id=3.0)
    tracker.finish()
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    with pytest.raises(ValueError, match="metric named 'run_id'"):
        analyzer.to_pandas()


LOAD_ALL_IN_A_PROCESS = r"""
import json, os, sys
from pathlib import Path
import cs336_basics.analysis.analyzer as analysis
from cs336_basics import ExperimentAnalyzer
folder, kill = Path(sys.argv[1]), sys.argv[2] == "kill"
parent, real = os.getpid(), analysis._warm_cache
def warm(path):
    if kill and "lr3_" in path.name:
        os.kill(os.getpid(), 9)  # what the OOM killer does to a worker
    (folder.parent / f"worker-{os.getpid()}").touch()
    return real(path)
analysis._warm_cache = warm
analyzer = ExperimentAnalyzer(folder)
analyzer.load_all(quiet=True, workers=2)
print(json.dumps({"runs": len(analyzer.logs), "parent": parent}))
"""


@pytest.mark.parametrize("kill", [False, True])
def test_load_all_parses_in_worker_processes_and_survives_one_dying(tmp_path, kill):
    import json

    folder = tmp_path / "runs"
    _sweep(folder, 6)
    for cache in folder.glob(".*.columns"):
        cache.unlink()
    out = subprocess.run(
        [sys.executable, "-c", LOAD_ALL_IN_A_PROCESS, str(folder), "kill" if kill else "ok"],
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(out.stdout.splitlines()[-1])
    assert answer["runs"] == 6
    workers = {int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")}
    assert workers and answer["parent"] not in workers  # parsed in other processes
    if kill:
        assert "parsing them here" in out.stderr


def test_a_reader_racing_a_rotation_gets_every_row_and_a_live_status(tmp_path, monkeypatch):
    from cs336_basics.store.layout import RunFiles

    tracker = _tracker(tmp_path, "rotating")
    for i in range(100):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.save(wait=True)
    for i in range(100, 150):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.flush()
    real = RunFiles.kept_journals
    gate = threading.Event()
    _slow_chunks(monkeypatch, gate)

    def rotated_in_between(files):
        tracker.save()  # the live journal just read becomes kept journal 1
        monkeypatch.setattr(RunFiles, "kept_journals", real)
        return real(files)

    monkeypatch.setattr(RunFiles, "kept_journals", rotated_in_between)
    problems: list[str] = []
    log = load_run(tracker.path, on_problem=problems.append).log
    assert log.metrics_history.column("iteration") == list(range(150))
    assert log.status == "running" and problems == []
    gate.set()
    tracker.close()


SIGNAL_SAVE = r"""
import os, signal, sys
import cs336_basics.core.history as history
from cs336_basics import ExperimentConfig, ExperimentTracker
tracker = ExperimentTracker(ExperimentConfig(experiment_name="signal"), log_dir=sys.argv[1])
tracker.start()
signal.signal(signal.SIGUSR1, lambda *a: tracker.save())  # a preemption handler
real_copy = history.copy
def copy_then_signal(row):  # the signal lands while the history hands a row out
    os.kill(os.getpid(), signal.SIGUSR1)
    return real_copy(row)
history.copy = copy_then_signal
for i in range(200):
    tracker.log_metrics(iteration=i, train_loss=1.0)
    if i % 10 == 9:
        tracker.log_eval(iteration=i, val_loss=0.5)  # reads the row back: the window
tracker.finish()
print("done", len(tracker.log.metrics_history))
"""


def test_a_signal_handler_that_saves_never_deadlocks(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SIGNAL_SAVE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.split() == ["done", "200"], out.stderr[-2000:]
    log = load_experiment_log(next(tmp_path.glob("*.json")))
    assert log.metrics_history.column("iteration") == list(range(200))
    assert log.metrics_history.column("val_loss")[9::10] == [0.5] * 20


def test_a_lazy_history_of_a_run_rewritten_since_says_so(tmp_path):
    from cs336_basics.core.errors import LogFormatError

    path = _finished_run(tmp_path, rows=100)
    log = load_experiment_log(path)
    assert not log.metrics_history.is_loaded and len(log.metrics_history) == 100
    resumed = ExperimentTracker(ExperimentConfig(experiment_name="cached"), resume=path)
    resumed.log_metrics(iteration=100, train_loss=0.5)
    resumed.finish()
    with pytest.raises(LogFormatError, match="changed on disk since it was loaded"):
        list(log.metrics_history)
    assert len(load_experiment_log(path).metrics_history) == 101


def test_a_shallow_copy_of_a_history_is_its_own(small_chunks):
    import copy

    history = History(MetricsSnapshot(i, i + 1, 0.0, 1.0) for i in range(10))
    twin = copy.copy(history)
    twin.append(MetricsSnapshot(10, 11, 0.0, 1.0))
    assert len(history) == 10 and history.last_iteration == 9 and len(twin) == 11
