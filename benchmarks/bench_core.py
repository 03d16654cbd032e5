"""Benchmark of the core tracker against baselines measured in the same run.

Part 1, against a naive baseline (a list of dataclasses dumped with stdlib ``json`` at the
end): training-thread cost of ``log_metrics`` with the crash-safe journal on (median and p99
per call over 100k calls of 6 scalars, val_loss every 1,000), finish+save and load of a
100k-row run, and save/load/resident memory of a 1M-row run (each in a fresh subprocess).

Part 2, a week-long run (each figure against the way it was done before, same run):

- save stall: what ``save()`` costs the training thread (background write) against writing
  the document on it (``save(wait=True)``'s write, what every save did before), and the
  slowest ``log_metrics`` call while the background write runs; paired, random order,
  ``--repeats`` times, at each of ``--stall-rows``;
- tracker memory: RSS growth of a process that logged N rows, against the same rows kept
  as row objects (the old history);
- load: time and RSS growth loading an N-row run from its columnar cache, against parsing
  its JSON document, in fresh processes, alternating, ``--repeats`` times;
- ``load_all`` of ``--runs`` runs x 10k rows: without caches on all cores (first load),
  without caches on one core (what the package did), and with caches (every later load);
  then a listing (``cs336-exp list``'s table) from caches against parsing every document.

    python benchmarks/bench_core.py [--rows 100000] [--big-rows 1000000] [--week]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import random
import shutil
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
        values = [log_obj.metrics_history.column(name) for name in FIELDS]  # every value read
        loads.append(time.perf_counter() - a)
        assert len(values[0]) == n
        del log_obj, values
    return {
        "median_us": med,
        "p99_us": p99,
        "loop_s": total,
        "save_s": save,
        "load_s": statistics.median(loads),
        "mb": size / 1e6,
    }


#: The guide's row fields (a load is timed until all of them are read).
FIELDS = [f.name for f in dataclasses.fields(NaiveRow)]

BIG_CHILD = r"""
import gc, sys, time, os
from cs336_basics import ExperimentConfig, ExperimentLog, MetricsSnapshot, load_experiment_log
from cs336_basics.store.document import write_document
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
    log.metrics_history.is_loaded or log.metrics_history[0]  # the columns read
    gc.collect()
    print(tracemalloc.get_traced_memory()[0] / 1e6)
else:
    gc.collect(); before = rss()
    a = time.perf_counter(); log = load_experiment_log(path)
    log.metrics_history[0]  # the columns read (a listing reads only the header)
    t = time.perf_counter() - a
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


WEEK_CHILD = r"""
import gc, json, os, random, resource, sys, time
from pathlib import Path
from cs336_basics import ExperimentConfig, ExperimentTracker
from cs336_basics import MetricsSnapshot
from cs336_basics.store.document import write_document
from cs336_basics.store.load import load_run

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3

def fill(tracker, start, n):
    log = tracker.log_metrics
    for i in range(start, start + n):
        log(i, 3.0 + i * 1e-7, 1e-3, 1e5, 2.0)
        if i % 1000 == 999:
            tracker.log_eval(i, val_loss=3.1)

mode, n, where = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
if mode == "stall":
    repeats = int(sys.argv[4])
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="week"), log_dir=where)
    tracker.start()
    fill(tracker, 0, n)
    tracker.save(wait=True)
    out = {"background": [], "foreground": [], "write": [], "step_bg": [], "step_idle": []}
    done = n

    def step():  # one training step: log a row, then wait 1 ms as for the GPU
        global done
        b = time.perf_counter()
        tracker.log_metrics(done, 3.0, 1e-3, 1e5, 2.0)
        done += 1
        time.sleep(0.001)
        return time.perf_counter() - b - 0.001  # the step's overhead (GIL waits included)

    for _ in range(repeats):
        for how in random.sample(["background", "foreground"], 2):
            fill(tracker, done, 1000)
            done += 1000
            gc.collect()
            if how == "background":
                a = time.perf_counter()
                tracker.save()
                out["background"].append(time.perf_counter() - a)
                saver, steps = tracker._saves.saver, 0
                while saver.busy:  # training goes on while the document is written
                    out["step_bg"].append(step())
                    steps += 1
                out["write"].append(saver.last_duration)
                for _ in range(max(steps, 50)):  # the same steps with no save under way
                    out["step_idle"].append(step())
            else:
                a = time.perf_counter()
                write_document(where / "copy.json", tracker._log, 1)
                out["foreground"].append(time.perf_counter() - a)
    tracker.close()
    print(json.dumps(out))
elif mode == "memory":
    gc.collect(); before = rss()
    if sys.argv[4] == "tracker":
        tracker = ExperimentTracker(ExperimentConfig(experiment_name="mem"), log_dir=where)
        tracker.start()
        fill(tracker, 0, n)
        tracker.flush()
        held = tracker
    else:
        held = [MetricsSnapshot(i, i + 1, i * 0.01, 3.0 + i * 1e-7,
                3.1 if i % 1000 == 999 else None, 1e-3, 1e5, 2.0) for i in range(n)]
    gc.collect()
    print(json.dumps({"mb": rss() - before}))
    os._exit(0)  # (the tracker's files are the caller's to remove)
elif mode == "make":
    tracker = ExperimentTracker(ExperimentConfig(experiment_name=sys.argv[4]), log_dir=where)
    tracker.start()
    fill(tracker, 0, n)
    tracker.finish()
    print(tracker.path)
elif mode == "load":
    path, how = where, sys.argv[4]
    gc.collect(); before, top = rss(), peak()
    a = time.perf_counter()
    log = load_run(path).log  # (parse: run with CS336_NO_CACHE=1)
    last = log.metrics_history[-1].iteration
    t = time.perf_counter() - a
    gc.collect()
    assert len(log.metrics_history) == n, (len(log.metrics_history), n)
    out = {"s": t, "mb": rss() - before, "peak_mb": max(0.0, peak() - top)}
    # Then every value read (as a plot or a DataFrame reads them), as numpy columns.
    history = log.metrics_history
    columns = [history.to_numpy(name) for name in ("iteration", "gradient_step",
               "wallclock_time", "train_loss", "val_loss", "learning_rate",
               "tokens_per_sec", "iter_time_ms")]
    out["read_s"] = time.perf_counter() - a
    gc.collect()
    out["read_mb"] = rss() - before
    print(json.dumps(out))
"""


def _child(*args: object, no_cache: bool = False) -> dict:
    environ = {**os.environ, "CS336_NO_CACHE": "1" if no_cache else "0"}
    out = subprocess.check_output([sys.executable, "-c", WEEK_CHILD, *map(str, args)], env=environ)
    return json.loads(out.splitlines()[-1])


def _med(values: list[float]) -> float:
    return statistics.median(values)


def bench_stall(rows: list[int], repeats: int, tmp: Path) -> None:
    print(f"\nsave stall on the training thread ({repeats} paired repeats, random order)")
    print(
        "  save(): the call on the training thread; foreground: writing the document there "
        "(every save before);\n  step overhead: a logged step with a 1 ms GPU wait, beyond "
        "the 1 ms, while the background write runs / with no save (p99 and max, ms)"
    )
    print(
        f"{'rows':>9}{'save() ms':>11}{'foreground ms':>15}{'ratio':>8}"
        f"{'bg write s':>12}{'step p99/max during':>21}{'step p99/max idle':>19}"
    )
    for n in rows:
        out = _child("stall", n, tmp / f"stall{n}", repeats)
        bg, fg = _med(out["background"]), _med(out["foreground"])
        during, idle = sorted(out["step_bg"]), sorted(out["step_idle"])

        def p99_max(values: list[float]) -> str:
            return f"{values[int(len(values) * 0.99)] * 1e3:.2f}/{values[-1] * 1e3:.2f}"

        print(
            f"{n:>9}{bg * 1e3:>11.2f}{fg * 1e3:>15.1f}{fg / bg:>7.0f}x"
            f"{_med(out['write']):>12.2f}{p99_max(during):>21}{p99_max(idle):>19}"
        )
        shutil.rmtree(tmp / f"stall{n}")


def bench_memory(rows: list[int], tmp: Path) -> None:
    print("\ntracker memory (RSS growth after logging N rows; journal on, no save)")
    print(f"{'rows':>9}{'tracker MB':>12}{'row objects MB':>16}{'ratio':>8}{'B/row':>8}")
    for n in rows:
        ours = _child("memory", n, tmp / f"mem{n}", "tracker")["mb"]
        objects = _child("memory", n, tmp, "objects")["mb"]
        shutil.rmtree(tmp / f"mem{n}")
        print(f"{n:>9}{ours:>12.0f}{objects:>16.0f}{objects / ours:>7.1f}x{ours * 1e6 / n:>8.0f}")


def bench_load(rows: list[int], repeats: int, tmp: Path) -> None:
    print(f"\nload (fresh process each; {repeats} alternating repeats, medians)")
    print(
        "  s and MB (RSS growth) after load_run; then after reading every value of the 8 "
        "columns as numpy arrays"
    )
    print(
        f"{'rows':>9}{'cache s':>9}{'MB':>5}{'+read s':>9}{'MB':>5}"
        f"{'parse s':>9}{'MB':>6}{'+read s':>9}{'MB':>6}{'parse peak MB':>15}{'ratio':>8}"
    )
    for n in rows:
        path = Path(_child_path("make", n, tmp / f"load{n}", "load"))
        times: dict[str, list[dict]] = {"cache": [], "parse": []}
        for _ in range(repeats):
            for how in random.sample(["cache", "parse"], 2):
                times[how].append(_child("load", n, path, how, no_cache=how == "parse"))
        keys = ("s", "mb", "read_s", "read_mb", "peak_mb")
        c = {k: _med([r[k] for r in times["cache"]]) for k in keys}
        p = {k: _med([r[k] for r in times["parse"]]) for k in keys}
        print(
            f"{n:>9}{c['s']:>9.3f}{c['mb']:>5.0f}{c['read_s']:>9.3f}{c['read_mb']:>5.0f}"
            f"{p['s']:>9.3f}{p['mb']:>6.0f}{p['read_s']:>9.3f}{p['read_mb']:>6.0f}"
            f"{p['peak_mb']:>15.0f}{p['read_s'] / c['read_s']:>7.0f}x"
        )
        shutil.rmtree(tmp / f"load{n}")


def _child_path(*args: object) -> str:
    out = subprocess.check_output([sys.executable, "-c", WEEK_CHILD, *map(str, args)])
    return out.decode().strip().splitlines()[-1]


LOAD_ALL_CHILD = r"""
import json, sys, time
from cs336_basics import ExperimentAnalyzer
how, folder = sys.argv[1], sys.argv[2]
a = time.perf_counter()
analyzer = ExperimentAnalyzer(folder)
if how == "listing-parse":  # (run with CS336_NO_CACHE=1: every document parsed)
    analyzer.load_all(quiet=True, workers=1)
elif how.startswith("listing"):
    analyzer.load_all(quiet=True)
else:
    analyzer.load_all(quiet=True, workers=int(how))
loaded = time.perf_counter() - a
if how.startswith("listing"):
    table = analyzer.get_comparison_table()
print(json.dumps({"s": time.perf_counter() - a, "load_s": loaded, "runs": len(analyzer.logs)}))
"""


def bench_load_all(runs: int, repeats: int, tmp: Path) -> None:
    folder = tmp / "many"
    folder.mkdir()
    first = Path(_child_path("make", 10_000, folder, "run0"))
    for k in range(1, runs):  # copies of one 10k-row run (making 200 would take minutes)
        shutil.copy(first, folder / f"experiment_run{k}_20260101_000000.json")

    def clear_caches() -> None:
        for cache in folder.glob(".*.columns"):
            cache.unlink()

    def child(how: str) -> dict:
        environ = {**os.environ, "CS336_NO_CACHE": "1" if how == "listing-parse" else "0"}
        out = subprocess.check_output(
            [sys.executable, "-c", LOAD_ALL_CHILD, how, str(folder)], env=environ
        )
        return json.loads(out.splitlines()[-1])

    cores = os.cpu_count() or 1
    samples: dict[str, list[float]] = {k: [] for k in ("all", "one", "cached", "list", "parse")}
    for _ in range(repeats):
        for how in random.sample(list(samples), len(samples)):
            if how in ("all", "one"):
                clear_caches()
                samples[how].append(child(str(cores if how == "all" else 1))["s"])
            elif how == "cached":
                child("1")  # (writes the caches if a parse ran last)
                samples[how].append(child("1")["s"])
            elif how == "list":
                child("1")
                samples[how].append(child("listing")["s"])
            else:
                samples[how].append(child("listing-parse")["s"])
    m = {k: _med(v) for k, v in samples.items()}
    print(f"\nload_all of {runs} runs x 10k rows ({repeats} repeats in random order, medians)")
    one = m["one"]
    print(f"  first load, no caches, {cores} cores:  {m['all']:.2f} s")
    print(f"  first load, no caches, 1 core:    {one:.2f} s  ({one / m['all']:.1f}x)")
    print(f"  with caches:                      {m['cached']:.2f} s  ({one / m['cached']:.0f}x)")
    print(
        f"  listing (load + comparison table): {m['list']:.2f} s from caches, "
        f"{m['parse']:.2f} s parsing every document ({m['parse'] / m['list']:.0f}x)"
    )


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--week", action="store_true", help="only part 2 (a week-long run)")
    parser.add_argument("--stall-rows", default="100000,1000000,6000000")
    parser.add_argument("--memory-rows", default="1000000,6000000")
    parser.add_argument("--load-rows", default="1000000,6000000")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.week:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
            bench_stall(_ints(args.stall_rows), args.repeats, tmp)
            bench_memory(_ints(args.memory_rows), tmp)
            bench_load(_ints(args.load_rows), args.repeats, tmp)
            bench_load_all(args.runs, args.repeats, tmp)
        return
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
            ("load_s", "load, every value read (s)", "<= 0.25 s"),
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
                f"load with the columns read {big['load_s']:.2f} s (target <= 1), "
                f"file {big['mb']:.0f} MB\n"
                f"  history after load (tracemalloc): {big['history_mb']:.0f} MB "
                f"(target <= 300); process RSS grew by {big['resident_mb']:.0f} MB "
                "(includes allocator memory kept from parsing)"
            )


if __name__ == "__main__":
    main()
