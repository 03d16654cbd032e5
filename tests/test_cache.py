"""``store/cache``: a saved run's columnar cache loads as its document does, is ignored and
rebuilt when stale, damaged or another document's, and holds no file open."""

from __future__ import annotations

import os
import time

import pytest
from helpers import finished_run, run_sweep, same_rows

from cs336_basics import ExperimentAnalyzer
from cs336_basics.experiment_log import load_experiment_log
from cs336_basics.store.cache import cache_path, read_cache
from cs336_basics.store.load import load_run


def test_a_saved_run_loads_from_its_cache_as_from_its_document(tmp_path, monkeypatch):
    path = finished_run(tmp_path)
    assert cache_path(path).exists()
    assert read_cache(path) is not None
    loaded = load_run(path)
    from_cache, save_id = loaded.log, loaded.save_id
    monkeypatch.setenv("CS336_NO_CACHE", "1")
    loaded = load_run(path)
    parsed, parsed_id = loaded.log, loaded.save_id
    assert save_id == parsed_id
    assert same_rows(list(from_cache.metrics_history), list(parsed.metrics_history))
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
    path = finished_run(tmp_path, rows=2000)
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
    first = finished_run(tmp_path / "a")
    second = finished_run(tmp_path / "b", rows=10)
    # A cache copied beside another document describes another file: ignored.
    (tmp_path / "b" / cache_path(second).name).write_bytes(cache_path(first).read_bytes())
    assert read_cache(second) is None
    assert len(load_experiment_log(second).metrics_history) == 10


@pytest.mark.parametrize("where", ["header_length", "data_byte"])
def test_a_cache_damaged_inside_is_never_used(tmp_path, where):
    path = finished_run(tmp_path, rows=3000)
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


def test_dashboard_style_reads_write_no_cache(tmp_path, monkeypatch):
    path = finished_run(tmp_path)
    cache_path(path).unlink()
    log = load_run(path, cache=False).log
    assert len(log.metrics_history) == 3000 and not cache_path(path).exists()


def test_a_log_loaded_from_its_cache_pickles_and_copies(tmp_path):
    import copy
    import pickle

    path = finished_run(tmp_path, rows=500)
    log = load_experiment_log(path)
    assert not log.metrics_history.is_loaded  # (pickling reads the columns first)
    for clone in (pickle.loads(pickle.dumps(log)), copy.deepcopy(log)):
        assert same_rows(list(clone.metrics_history), list(log.metrics_history))
        assert clone.metrics_history.column("grad_norm") == log.metrics_history.column("grad_norm")


def test_runs_loaded_from_caches_hold_no_open_file(tmp_path):
    run_sweep(tmp_path, 8)
    fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    before = fds()
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    for log in analyzer.logs.values():
        assert log.metrics_history.column("iteration") == list(range(50))
    assert fds() == before
