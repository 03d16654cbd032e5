"""What a save costs as a run grows: saves that append (this checkout) against writing the
whole document each time (the way before: the same run, a writer that remembers nothing).

Two figures, each the paired median over repetitions that run both ways in random order:

- ``finish()`` of a run of ``--finish-rows`` rows (default 100k) logged with a save every
  10k rows, as a training loop does: wall time of the call;
- a background save of a run of ``--rows`` rows (default 6M) after ``--new`` new rows
  (default 10k): CPU seconds the process spends until the document and its cache are on
  disk (``save(wait=True)``; training idle meanwhile, so it is the save's CPU).

    python benchmarks/bench_saves.py [--reps 7] [--rows 6000000] [--finish-rows 100000]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import tempfile
import time
from pathlib import Path

from cs336_basics import ExperimentConfig, ExperimentTracker
from cs336_basics.store.document import DocumentWriter


def fill(tracker: ExperimentTracker, start: int, n: int, save_every: int = 0) -> int:
    log = tracker.log_metrics
    for i in range(start, start + n):
        log(i, 3.0 - i * 1e-7, 1e-3, 1e5, 2.0)
        if i % 1000 == 999:
            tracker.log_eval(i, val_loss=3.1)
        if save_every and i % save_every == save_every - 1:
            tracker.save()
    return start + n


def forget(tracker: ExperimentTracker) -> None:
    """Make the tracker's next save write the whole document (the way before)."""
    saves = tracker._saves
    assert saves is not None
    saves.writer = saves.saver.writer = DocumentWriter(saves.files.document)


def finish_once(rows: int, whole: bool) -> float:
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="finish"), log_dir=tempfile.mkdtemp()
    )
    fill(tracker, 0, rows, save_every=10_000)
    tracker.save(wait=True)
    if whole:
        forget(tracker)
    gc.collect()
    start = time.perf_counter()
    tracker.finish()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions (default 7)")
    parser.add_argument("--rows", type=int, default=6_000_000, help="rows of the long run")
    parser.add_argument("--new", type=int, default=10_000, help="rows logged between saves")
    parser.add_argument(
        "--finish-rows", type=int, default=100_000, help="rows of the run finish() ends"
    )
    args = parser.parse_args()

    results: dict[str, list[float]] = {"append": [], "whole": []}
    for _ in range(args.reps):
        for mode in random.sample(["append", "whole"], 2):
            results[mode].append(finish_once(args.finish_rows, mode == "whole"))
    diffs = [w / a for a, w in zip(results["append"], results["whole"], strict=True)]
    print(f"finish() of a {args.finish_rows:,}-row run, {args.reps} paired repetitions:")
    print(f"  appending saves:   median {statistics.median(results['append']):.3f} s")
    print(f"  whole document:    median {statistics.median(results['whole']):.3f} s")
    print(f"  ratio whole/append (paired median): {statistics.median(diffs):.1f}x")

    print(f"\nbuilding a {args.rows:,}-row run ...", flush=True)
    folder = Path(tempfile.mkdtemp())
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="long"), log_dir=folder)
    done = fill(tracker, 0, args.rows)
    tracker.save(wait=True)
    cpu: dict[str, list[float]] = {"append": [], "whole": []}
    for _ in range(args.reps):
        for mode in random.sample(["append", "whole"], 2):
            done = fill(tracker, done, args.new)
            if mode == "whole":
                forget(tracker)
            gc.collect()
            start = time.process_time()
            tracker.save(wait=True)
            cpu[mode].append(time.process_time() - start)
    ratios = [w / a for a, w in zip(cpu["append"], cpu["whole"], strict=True)]
    print(f"background save of a {args.rows:,}-row run after {args.new:,} new rows (CPU):")
    print(f"  appending saves:   median {statistics.median(cpu['append']):.3f} s")
    print(f"  whole document:    median {statistics.median(cpu['whole']):.3f} s")
    print(f"  ratio whole/append (paired median): {statistics.median(ratios):.0f}x")
    tracker.finish()


if __name__ == "__main__":
    main()
