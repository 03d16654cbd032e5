"""What the W&B mirror costs a loop shaped like a GPU training loop, on a CPU.

A step is short Python bursts between calls that release the GIL (sha256 of a buffer, as a
torch op on a GPU returns to Python after a kernel launch), about 1 ms in all, then one
``log_metrics`` of 6 fields. Modes, interleaved in random order in every repetition:

- ``off``: the tracker, no sink (the baseline);
- ``mirror``: ``sinks=["wandb"]`` (offline): the mirror in its own process (the default);
- ``in_process``: ``WandbSink(in_process=True)``: wandb's Python on a thread of this process
  (the design before the mirror process; a control showing what it saves).

Figures: per-step time of each mode, the paired median of (mode - off) over repetitions
with its spread, and the time ``start()`` takes with the mirror (it must not delay the first
step by more than about 0.2 s).

    python benchmarks/bench_mirror_cpu.py [--reps 9] [--steps 1500]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from wandb_records import offline_env  # noqa: E402

from cs336_basics import ExperimentConfig, ExperimentTracker, WandbSink  # noqa: E402

BUFFER = os.urandom(256 * 1024)


def burst(n: int) -> float:
    total = 0.0
    for i in range(n):
        total += i * 0.5
    return total


def step() -> None:
    for _ in range(6):
        burst(40)
        hashlib.sha256(BUFFER).digest()  # releases the GIL (inputs over 2 KiB)


def run(mode: str, steps: int, log_dir: Path) -> tuple[float, float]:
    """(seconds per step over the loop, seconds start() took)."""
    sinks: list = []
    if mode == "mirror":
        sinks = ["wandb"]
    elif mode == "in_process":
        sinks = [WandbSink(in_process=True)]
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name=mode), log_dir=log_dir, sinks=sinks
    )
    t0 = time.perf_counter()
    tracker.start()
    started = time.perf_counter() - t0
    time.sleep(2.0)  # let the mirror's wandb.init settle before timing (a real run's warmup)
    t0 = time.perf_counter()
    for i in range(steps):
        step()
        tracker.log_metrics(i, 3.0, 1e-3, 1e5, 1.0, grad_norm=0.5)
        tracker.increment_gradient_step()
    per_step = (time.perf_counter() - t0) / steps
    tracker.finish(sink_timeout=120)
    return per_step, started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    os.environ.update(offline_env(base / "wandb"))
    modes = ["off", "mirror", "in_process"]
    per_step: dict[str, list[float]] = {m: [] for m in modes}
    starts: list[float] = []
    rng = random.Random(args.seed)
    for rep in range(args.reps):
        order = modes[:]
        rng.shuffle(order)
        for mode in order:
            seconds, started = run(mode, args.steps, base / "logs")
            per_step[mode].append(seconds)
            if mode == "mirror":
                starts.append(started)
        print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr)
    off = per_step["off"]
    print(f"{args.reps} repetitions x {args.steps} steps, modes in random order")
    for mode in modes:
        values = per_step[mode]
        line = f"{mode:>11}: {statistics.median(values) * 1e3:.3f} ms/step"
        if mode != "off":
            rel = [(v - o) / o * 100 for v, o in zip(values, off, strict=True)]
            line += (
                f", paired median {statistics.median(rel):+.1f}% vs off "
                f"(per rep {min(rel):+.1f}% .. {max(rel):+.1f}%)"
            )
        print(line)
    print(
        f"start() with the mirror: median {statistics.median(starts) * 1e3:.1f} ms, "
        f"max {max(starts) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
