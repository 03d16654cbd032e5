"""Pulling a 100k-row run: what ``run_to_log`` adds on top of wandb's own ``scan_history``.

Both read the same rows from the fake W&B GraphQL server of the tests (127.0.0.1), in the
same run, alternating, median of 3:

    python benchmarks/bench_pull.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_wandb import API_KEY, FakeRun, FakeWandb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    fake = FakeWandb()
    os.environ.update(
        WANDB_BASE_URL=fake.url,
        WANDB_API_KEY=API_KEY,
        WANDB_ENTITY="ent",
        WANDB_SILENT="true",
        WANDB_DIR=tmp,
        WANDB_CONFIG_DIR=tmp,
        WANDB_CACHE_DIR=tmp,
        WANDB_DATA_DIR=tmp,
    )
    rows = []
    for i in range(args.rows):
        rows.append(
            {
                "_step": len(rows),
                "_runtime": 0.1 * i,
                "iteration": i,
                "gradient_step": i + 1,
                "wallclock_time": 0.1 * i,
                "train/loss": 5.0 - 1e-5 * i,
                "train/lr": 1e-3,
                "perf/tokens_per_sec": 1e5,
                "perf/iter_time_ms": 2.0,
            }
        )
        if (i + 1) % 1000 == 0:
            rows.append(
                {
                    "_step": len(rows),
                    "iteration": i,
                    "gradient_step": i + 1,
                    "wallclock_time": 0.1 * i,
                    "val/loss": 5.1,
                }
            )
    fake.add("proj", FakeRun(id="big", name="big", history=rows))

    import wandb

    from cs336_basics.wandb_adapter.pull import run_to_log

    api = wandb.Api(timeout=60)
    run = api.run("ent/proj/big")
    scan, pull = [], []
    for _ in range(3):
        a = time.perf_counter()
        n = sum(1 for _ in run.scan_history(page_size=args.page_size))
        scan.append(time.perf_counter() - a)
        a = time.perf_counter()
        log = run_to_log(run, page_size=args.page_size)
        pull.append(time.perf_counter() - a)
    fake.close()
    assert n == len(rows) and len(log.metrics_history) == args.rows
    s, p = statistics.median(scan), statistics.median(pull)
    print(f"{args.rows} rows ({len(rows)} W&B history rows), page size {args.page_size}")
    print(
        f"scan_history alone: {s:.2f} s; run_to_log (scan + conversion): {p:.2f} s; "
        f"conversion adds {100 * (p - s) / s:.1f}% (target <= 20%)"
    )


if __name__ == "__main__":
    main()
