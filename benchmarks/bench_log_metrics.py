"""Training-thread cost of ``log_metrics``: this checkout against another git revision.

Each repetition runs both versions in fresh subprocesses, in random order; each subprocess
times 100k calls of 6 scalars (val_loss every 1,000, journal on) one call at a time and
reports the median, and the mean over the whole loop (what rare slow calls, such as the
history freezing a block of rows, add). The figures are paired medians over repetitions.

    python benchmarks/bench_log_metrics.py --against 88153ca [--reps 9] [--calls 100000]

The other revision is checked out with ``git worktree`` into a temporary folder (removed at
the end); both import their own ``src`` through PYTHONPATH, with the same interpreter.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys, tempfile
sys.path.insert(0, sys.argv[1])
from timing import per_call
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker
tracker = ExperimentTracker(ExperimentConfig(experiment_name="bench"),
                            log_dir=tempfile.mkdtemp())
tracker.start()
def log(i):
    tracker.log_metrics(iteration=i, train_loss=3.0, learning_rate=1e-3,
                        tokens_per_sec=1e5, iter_time_ms=2.0, grad_norm=0.5)
    tracker.increment_gradient_step()
    if (i + 1) % 1000 == 0:
        tracker.log_eval(iteration=i, val_loss=3.1)
n = int(sys.argv[2])
median, p99, total = per_call(log, n)
tracker.close()
print(median, p99, total / n * 1e6)
"""


def measure(src: Path, calls: int) -> tuple[float, float, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "benchmarks"), str(calls)],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(other), args.against],
            check=True,
        )
        try:
            modes = {"this": ROOT / "src", args.against: other / "src"}
            results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
            rng = random.Random(0)
            for rep in range(args.reps):
                order = list(modes)
                rng.shuffle(order)
                for mode in order:
                    results[mode].append(measure(modes[mode], args.calls))
                print(f"rep {rep + 1}/{args.reps}", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)])
    for mode, values in results.items():
        medians = [m for m, _, _ in values]
        p99s = [p for _, p, _ in values]
        means = [a for _, _, a in values]
        print(
            f"{mode:>12}: median per call {statistics.median(medians):.3f} us "
            f"(reps {min(medians):.3f}-{max(medians):.3f}), p99 {statistics.median(p99s):.2f} us, "
            f"mean (whole loop, timing included) {statistics.median(means):.3f} us"
        )
    diffs = [a[0] - b[0] for a, b in zip(results["this"], results[args.against], strict=True)]
    ratios = [a[0] / b[0] for a, b in zip(results["this"], results[args.against], strict=True)]
    mean_ratios = [a[2] / b[2] for a, b in zip(results["this"], results[args.against], strict=True)]
    print(
        f"paired median difference (this - {args.against}): {statistics.median(diffs):+.3f} us, "
        f"ratio {statistics.median(ratios):.3f} over {args.reps} repetitions; "
        f"mean per call ratio {statistics.median(mean_ratios):.3f}"
    )


if __name__ == "__main__":
    main()
