"""Importing a 100k-row offline W&B run: ``import_wandb_runs`` against wandb's reader alone.

The run is written by the real client (offline, in a subprocess, temp dirs): one row per
step with a loss, a learning rate and one extra metric, plus an eval every 1,000 steps.
Then, alternating, median of 3: the whole import (reading, mapping, writing the JSON) and
wandb's own reader alone (``wandb leet inspect --json`` read to the end):

    python benchmarks/bench_import.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from wandb_records import offline_env  # noqa: E402

WRITER = """
import sys, wandb
run = wandb.init(project="bench", name="big", config={"learning_rate": 1e-3})
for i in range(int(sys.argv[1])):
    run.log({"iter": i, "train/loss": 2.0 - i * 1e-6, "lr": 1e-3, "mfu": 0.3})
    if i % 1000 == 999:
        run.log({"iter": i, "val/loss": 1.5})
run.finish()
wandb.teardown()
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp())
    env = dict(os.environ, **offline_env(base))
    os.environ.update(offline_env(base))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", WRITER, str(args.rows)], env=env, check=True)
    print(f"wrote {args.rows:,} rows offline in {time.perf_counter() - started:.1f} s")
    (file,) = (base / "runs" / "wandb").glob("offline-run-*/run-*.wandb")
    print(f"{file.name}: {file.stat().st_size / 1e6:.1f} MB")

    from cs336_basics import import_wandb_runs
    from cs336_basics.wandb_adapter.wandb_file import read_records

    imports, reads = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        (log,) = import_wandb_runs(file, save_dir=base / "logs")
        imports.append(time.perf_counter() - t)
        assert len(log.metrics_history) == args.rows, len(log.metrics_history)
        t = time.perf_counter()
        count = sum(1 for _ in read_records(file))
        reads.append(time.perf_counter() - t)
    imp, read = statistics.median(imports), statistics.median(reads)
    print(f"wandb's reader alone ({count:,} records): {read:.2f} s")
    print(
        f"import_wandb_runs, {args.rows:,} rows: {imp:.2f} s "
        f"({args.rows / imp:,.0f} rows/s; mapping and saving add {imp - read:+.2f} s)"
    )


if __name__ == "__main__":
    main()
