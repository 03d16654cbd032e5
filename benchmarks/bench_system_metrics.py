"""Training-thread cost of ``log_metrics`` with system-metrics sampling on, against off (and
of the alert detector on the journal thread, against none).

Modes, each in a fresh subprocess, interleaved in random order over repetitions:

- ``off``: ``system_interval=0`` (the baseline);
- ``on``: the default, a sample every 10 s (what a run pays);
- ``stress``: a sample every 50 ms (200x the default: the sampler thread competes with the
  loop for the GIL as often as it ever could);
- ``no_alerts``: ``off`` without alert detection (``alert_rules=False``): what the detector
  on the journal thread costs the loop, seen as ``off`` against it.

Each subprocess times ``--calls`` calls of 6 scalars (val_loss every 1,000, journal and
alert detection on), one call at a time, and reports the median, the p99 and the mean
over the whole loop. The figures are medians over repetitions and paired ratios against
``off`` measured in the same repetition.

    python benchmarks/bench_system_metrics.py [--reps 7] [--calls 100000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: mode -> (seconds between system samples, alert detection on)
MODES = {"off": (0.0, True), "on": (10.0, True), "stress": (0.05, True), "no_alerts": (0.0, False)}
CHILD = """
import sys, tempfile
sys.path.insert(0, sys.argv[1])
from timing import per_call
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker
tracker = ExperimentTracker(ExperimentConfig(experiment_name="bench"),
                            log_dir=tempfile.mkdtemp(), system_interval=float(sys.argv[3]),
                            alert_rules=None if sys.argv[4] == "1" else False)
tracker.start()
def log(i):
    tracker.log_metrics(iteration=i, train_loss=3.0, learning_rate=1e-3,
                        tokens_per_sec=1e5, iter_time_ms=2.0, grad_norm=0.5)
    tracker.increment_gradient_step()
    if (i + 1) % 1000 == 0:
        tracker.log_eval(iteration=i, val_loss=3.1)
n = int(sys.argv[2])
median, p99, total = per_call(log, n)
samples = len(tracker.log.system_history)
tracker.close()
print(median, p99, total / n * 1e6, samples)
"""


def measure(mode: tuple[float, bool], calls: int) -> tuple[float, float, float, int]:
    interval, alerts = mode
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(ROOT / "benchmarks"),
            str(calls),
            str(interval),
            "1" if alerts else "0",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), float(out[2]), int(out[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    if args.reps < 7:
        parser.error("--reps: at least 7 (paired medians)")
    results: dict[str, list[tuple[float, float, float, int]]] = {m: [] for m in MODES}
    rng = random.Random(0)
    for rep in range(args.reps):
        order = list(MODES)
        rng.shuffle(order)
        for mode in order:
            results[mode].append(measure(MODES[mode], args.calls))
        print(f"rep {rep + 1}/{args.reps}: order {', '.join(order)}", file=sys.stderr)
    base = results["off"]
    for mode, values in results.items():
        medians = [m for m, _, _, _ in values]
        p99s = [p for _, p, _, _ in values]
        means = [a for _, _, a, _ in values]
        samples = statistics.median(s for _, _, _, s in values)
        line = (
            f"{mode:>9} (interval {MODES[mode][0]:g} s, alerts "
            f"{'on' if MODES[mode][1] else 'off'}): median per call "
            f"{statistics.median(medians):.3f} us (reps {min(medians):.3f}-{max(medians):.3f}), "
            f"p99 {statistics.median(p99s):.2f} us, mean {statistics.median(means):.3f} us, "
            f"{samples:g} samples taken"
        )
        if mode != "off":
            ratio = statistics.median(a[0] / b[0] for a, b in zip(values, base, strict=True))
            mean_ratio = statistics.median(a[2] / b[2] for a, b in zip(values, base, strict=True))
            p99_ratio = statistics.median(a[1] / b[1] for a, b in zip(values, base, strict=True))
            line += (
                f"; paired ratio to off: median {ratio:.3f}, p99 {p99_ratio:.3f}, "
                f"mean {mean_ratio:.3f}"
            )
        print(line)


if __name__ == "__main__":
    main()
