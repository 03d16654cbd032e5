"""``cs336-exp report --html``: file size, points drawn, time to write and to open offline.

    python benchmarks/bench_report_html.py [--runs 20] [--rows 100000] [--data DIR]

Writes (once, kept in ``--data``) ``--runs`` runs of ``--rows`` rows each with a real
tracker: noisy losses, a cosine learning-rate schedule with warmup, an eval every 1000
rows, in groups of four seeds. Then, for the default ``--max-points`` (2000) and a few
others: the time ``cs336-exp report --html`` takes (a fresh process), the file's size (and
how much of it is plotly.min.js), the points it draws, and the time headless chromium, with
the network off, takes to show every chart (``window.__report.ready``).
"""

from __future__ import annotations

import argparse
import math
import random
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dashboard_helpers import chrome, wait_for  # noqa: E402

from cs336_basics.dashboard.server import plotly_js  # noqa: E402
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker  # noqa: E402

OFFLINE = (
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def write_runs(folder: Path, runs: int, rows: int) -> None:
    if folder.is_dir() and len(list(folder.glob("*.json"))) == runs:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for r in range(runs):
        lr = 1e-3 * (1 + r // 4)
        rng = random.Random(r)
        tracker = ExperimentTracker(
            ExperimentConfig(experiment_name=f"lr{lr:g}_seed{r % 4}", max_learning_rate=lr),
            log_dir=folder,
            group=f"lr{lr:g}",
            tags=["bench"],
            provenance=False,
        )
        warmup = rows // 50
        for i in range(rows):
            rate = (
                lr * (i + 1) / warmup
                if i < warmup
                else lr * 0.5 * (1 + math.cos(math.pi * (i - warmup) / (rows - warmup)))
            )
            loss = 2 + 3 * math.exp(-i / rows * 5 * (1 + r // 4)) + 0.1 * rng.random()
            tracker.log_metrics(iteration=i, train_loss=loss, learning_rate=rate)
            tracker.increment_gradient_step()
            if (i + 1) % 1000 == 0:
                tracker.log_eval(iteration=i, val_loss=loss + 0.1)
        tracker.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/cs336-bench-report"))
    parser.add_argument("--max-points", default="2000,1000,500")
    args = parser.parse_args()
    folder = args.data / f"{args.runs}x{args.rows}"
    start = time.perf_counter()
    write_runs(folder, args.runs, args.rows)
    print(
        f"{args.runs} runs x {args.rows:,} rows in {folder} ({time.perf_counter() - start:.0f} s)"
    )
    library = plotly_js()
    assert library is not None, "plotly is needed (the dashboard extra)"
    plotly_mb = library.stat().st_size / 1e6
    driver = chrome(1300, 1000, OFFLINE)
    try:
        for points in [int(p) for p in args.max_points.split(",")]:
            out = args.data / f"report_{args.runs}x{args.rows}_{points}.html"
            start = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cs336_basics",
                    "report",
                    "--html",
                    str(out),
                    "--log-dir",
                    str(folder),
                    "--max-points",
                    str(points),
                ],  # fmt: skip
                capture_output=True,
                text=True,
                check=True,
            )
            took = time.perf_counter() - start
            drawn = re.search(r"Curves: (\d+) curves, ([\d,]+) points", out.read_text())
            assert drawn is not None
            size = out.stat().st_size / 1e6
            driver.get("about:blank")
            start = time.perf_counter()
            driver.get(out.as_uri())
            wait_for(driver, "window.__report && window.__report.ready", 120)
            opened = time.perf_counter() - start
            errors = driver.execute_script("return window.__report.errors")
            print(
                f"--max-points {points}: {size:.2f} MB ({size - plotly_mb:.2f} MB of data and "
                f"page, {plotly_mb:.2f} MB plotly.min.js), {drawn.group(1)} curves, "
                f"{drawn.group(2)} points (+ group bands); written in {took:.1f} s, shown "
                f"offline in {opened:.1f} s{'; errors ' + str(errors) if errors else ''}"
            )
            print("  " + proc.stdout.strip())
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
