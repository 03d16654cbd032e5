"""Training-thread cost of ``log_metrics`` with the W&B sink on, against calling
``run.log`` directly (the baseline), both on wandb 0.31 in offline mode, in the same run.

    python benchmarks/bench_wandb.py [--rows 20000]

It also checks that the mirrored W&B run holds every row after ``finish()``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import wandb_records  # noqa: E402  (the tests' reader of wandb's offline log)

os.environ.update(wandb_records.offline_env(Path(tempfile.mkdtemp(prefix="bench-wandb-"))))

import wandb  # noqa: E402
from timing import per_call  # noqa: E402

from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    n = parser.parse_args().rows

    run = wandb.init(project="bench", name="direct", reinit="create_new")
    direct = per_call(
        lambda i: run.log(
            {
                "iteration": i,
                "gradient_step": i + 1,
                "wallclock_time": 0.1 * i,
                "train/loss": 3.0,
                "train/lr": 1e-3,
                "perf/tokens_per_sec": 1e5,
                "perf/iter_time_ms": 2.0,
            }
        ),
        n,
    )
    run.finish()

    with tempfile.TemporaryDirectory() as log_dir:
        tracker = ExperimentTracker(
            ExperimentConfig(experiment_name="bench"), log_dir=log_dir, sinks=["wandb"]
        )
        tracker.start()
        log_metrics, inc = tracker.log_metrics, tracker.increment_gradient_step

        def step(i: int) -> None:
            log_metrics(
                iteration=i,
                train_loss=3.0,
                learning_rate=1e-3,
                tokens_per_sec=1e5,
                iter_time_ms=2.0,
            )
            inc()

        ours = per_call(step, n)
        a = time.perf_counter()
        tracker.finish()
        drain = time.perf_counter() - a
        state = tracker.log.mirrors["wandb"]
    wandb.teardown()
    rows = len(wandb_records.history(state["sync_dir"]))
    print(f"{n} rows, wandb {wandb.__version__} offline, python {sys.version.split()[0]}")
    print(f"{'':34}{'tracker+sink':>14}{'run.log':>12}{'ratio':>9}")
    print(
        f"{'training-thread median (us)':34}{ours[0]:>14.2f}{direct[0]:>12.2f}"
        f"{direct[0] / ours[0]:>8.1f}x   target <= 5 us, >= 20x"
    )
    print(
        f"{'training-thread p99 (us)':34}{ours[1]:>14.2f}{direct[1]:>12.2f}"
        f"{direct[1] / ours[1]:>8.1f}x"
    )
    print(f"{'loop total (s)':34}{ours[2]:>14.3f}{direct[2]:>12.3f}")
    print(
        f"finish() waited {drain:.2f} s for the mirror to drain; "
        f"W&B history rows: {rows} of {n} ({'all' if rows == n else 'MISSING ROWS'})"
    )


if __name__ == "__main__":
    main()
