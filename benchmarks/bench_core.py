"""Benchmark of the core tracker against a naive baseline, measured in the same run.

Baseline (named in the issue): a list of dataclasses dumped with stdlib ``json`` at the end.
Figures: training-thread cost of ``log_metrics`` with the crash-safe journal on (median and
p99 per call over 100k calls of 6 scalars, val_loss every 1,000), finish+save and load of a
100k-row run, and save/load/resident memory of a 1M-row run (each in a fresh subprocess).

    python benchmarks/bench_core.py [--rows 100000] [--big-rows 1000000]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import per_call

from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker, load_experiment_log


@dataclasses.dataclass
class NaiveRow:
    iteration: int
    gradient_step: int
    wallclock_time: float
    train_loss: float
    val_loss: float | None
    learning_rate: float
    tokens_per_sec: float
    iter_time_ms: float


def bench_naive(n: int, out: Path) -> dict[str, float]:
    rows: list[NaiveRow] = []
    t0 = time.perf_counter()

    def log(i: int) -> None:
        rows.append(NaiveRow(i, i + 1, time.perf_counter() - t0, 3.0, None, 1e-3, 1e5, 2.0))
        if (i + 1) % 1000 == 0:
            rows[-1].val_loss = 3.1

    med, p99, total = per_call(log, n)
    a = time.perf_counter()
    out.write_text(json.dumps({"metrics_history": [dataclasses.asdict(r) for r in rows]}))
    save = time.perf_counter() - a
    a = time.perf_counter()
    doc = json.loads(out.read_text())
    [NaiveRow(**r) for r in doc["metrics_history"]]
    load = time.perf_counter() - a
    return {"median_us": med, "p99_us": p99, "loop_s": total, "save_s": save, "load_s": load}


def bench_tracker(n: int, log_dir: Path) -> dict[str, float]:
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="bench"), log_dir=log_dir)
    tracker.start()
    log_metrics, log_eval, inc = (
        tracker.log_metrics,
        tracker.log_eval,
        tracker.increment_gradient_step,
    )

    def log(i: int) -> None:
        log_metrics(
            iteration=i, train_loss=3.0, learning_rate=1e-3, tokens_per_sec=1e5, iter_time_ms=2.0
        )
        inc()
        if (i + 1) % 1000 == 0:
            log_eval(iteration=i, val_loss=3.1)

    med, p99, total = per_call(log, n)
    a = time.perf_counter()
    tracker.finish()
    tracker.save()
    save = time.perf_counter() - a
    size = tracker.path.stat().st_size
    loads = []
    for _ in range(3):
        gc.collect()
        a = time.perf_counter()
        log_obj = load_experiment_log(tracker.path)
        loads.append(time.perf_counter() - a)
        assert len(log_obj.metrics_history) == n
        del log_obj
    return {
        "median_us": med,
        "p99_us": p99,
        "loop_s": total,
        "save_s": save,
        "load_s": statistics.median(loads),
        "mb": size / 1e6,
    }


BIG_CHILD = r"""
import gc, sys, time, os
from cs336_basics.tracking.records import ExperimentConfig, ExperimentLog, MetricsSnapshot
from cs336_basics.tracking.storage import write_document, load_experiment_log
n, path = int(sys.argv[1]), sys.argv[2]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
if sys.argv[3] == "save":
    log = ExperimentLog(config=ExperimentConfig(experiment_name="big"))
    log.metrics_history = [MetricsSnapshot(i, i + 1, i * 0.01, 3.0 + i * 1e-7,
                           3.1 if i % 1000 == 0 else None, 1e-3, 1e5, 2.0) for i in range(n)]
    gc.collect()
    a = time.perf_counter(); write_document(__import__("pathlib").Path(path), log, 1)
    print(time.perf_counter() - a)
elif sys.argv[3] == "traced":
    import tracemalloc
    tracemalloc.start()
    log = load_experiment_log(path)
    gc.collect()
    print(tracemalloc.get_traced_memory()[0] / 1e6)
else:
    gc.collect(); before = rss()
    a = time.perf_counter(); log = load_experiment_log(path); t = time.perf_counter() - a
    gc.collect()
    assert len(log.metrics_history) == n
    print(t, rss() - before)
"""


def bench_big(n: int, tmp: Path) -> dict[str, float]:
    path = tmp / "big.json"
    save = float(
        subprocess.check_output([sys.executable, "-c", BIG_CHILD, str(n), str(path), "save"])
    )
    load, mem = map(
        float,
        subprocess.check_output(
            [sys.executable, "-c", BIG_CHILD, str(n), str(path), "load"]
        ).split(),
    )
    traced = float(
        subprocess.check_output([sys.executable, "-c", BIG_CHILD, str(n), str(path), "traced"])
    )
    return {
        "save_s": save,
        "load_s": load,
        "resident_mb": mem,
        "history_mb": traced,
        "mb": path.stat().st_size / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        naive = bench_naive(args.rows, tmp / "naive.json")
        ours = bench_tracker(args.rows, tmp / "logs")
        print(
            f"{args.rows} log_metrics calls (6 scalars, val_loss every 1000), "
            f"python {sys.version.split()[0]}, {os.cpu_count()} cpus"
        )
        print(f"{'':28}{'tracker':>12}{'naive':>12}{'ratio':>9}  target")
        for key, label, target in [
            ("median_us", "log_metrics median (us)", "<= 2 us"),
            ("p99_us", "log_metrics p99 (us)", ""),
            ("loop_s", "whole loop (s)", ""),
            ("save_s", "finish+save (s)", "<= 0.15 s"),
            ("load_s", "load (s)", "<= 0.25 s"),
        ]:
            ratio = naive[key] / ours[key] if ours[key] else float("inf")
            print(f"{label:28}{ours[key]:>12.4f}{naive[key]:>12.4f}{ratio:>8.1f}x  {target}")
        print(
            f"file size: {ours['mb']:.1f} MB "
            "(tracker, journal on; the naive baseline has no journal)"
        )
        if args.big_rows:
            big = bench_big(args.big_rows, tmp)
            print(
                f"\n{args.big_rows} rows: save {big['save_s']:.2f} s (target <= 1.5), "
                f"load {big['load_s']:.2f} s (target <= 2), file {big['mb']:.0f} MB\n"
                f"  history objects after load (tracemalloc): {big['history_mb']:.0f} MB "
                f"(target <= 300); process RSS grew by {big['resident_mb']:.0f} MB "
                "(includes allocator memory kept from parsing)"
            )


if __name__ == "__main__":
    main()
