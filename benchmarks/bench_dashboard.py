"""``cs336-exp serve``: time to first chart, live latency and server memory, in a real chromium.

    python benchmarks/bench_dashboard.py [--reps 7] [--data /tmp/cs336-bench-dashboard]

Two log dirs, written once by a real tracker (kept in ``--data`` for later runs): 20 runs x
100k rows, and one run of 1M rows. Each repetition runs both modes in random order; a mode
starts ``cs336-exp serve`` in a fresh process, waits until every run is loaded (``ready``),
opens the page in a fresh tab and reads when the first chart was drawn (``first chart``:
the curves on a canvas, before plotly has loaded; ``interactive``: the plotly chart; both
from navigation start, as the page records them in ``window.__dash``), then opens it again
(``again``: the server's thinned curves are cached). The server's memory is read from
``/proc`` (VmRSS now, VmHWM its peak; the loading worker processes apart). Then live latency:
rows logged by a live tracker, timed from ``log_metrics`` to the point drawn on the page.
Medians over repetitions; ``again - first`` is a paired median.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dashboard_helpers import chrome, wait_for  # noqa: E402

from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker  # noqa: E402


def write_runs(folder: Path, runs: int, rows: int) -> None:
    if folder.is_dir() and len(list(folder.glob("*.json"))) == runs:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for r in range(runs):
        tracker = ExperimentTracker(
            ExperimentConfig(experiment_name=f"run_{r:02d}", max_learning_rate=1e-3 * (r + 1)),
            log_dir=folder,
        )
        for i in range(rows):
            tracker.log_metrics(
                iteration=i,
                train_loss=2 + 3 * math.exp(-i / rows * 5) + 0.05 * random.random(),
                learning_rate=1e-3,
                tokens_per_sec=1000.0 + r,
                grad_norm=1.0 + 0.1 * random.random(),
            )
            tracker.increment_gradient_step()
            if (i + 1) % 1000 == 0:
                tracker.log_eval(iteration=i, val_loss=2.5)
        tracker.finish()


def memory(pid: int) -> dict[str, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) / 1024 for k in ("VmRSS", "VmHWM")}


def serve(folder: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cs336_basics", "serve", "--log-dir", str(folder), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    return proc, line.split(" at ", 1)[1].split()[0]


def one(driver, folder: Path) -> dict[str, float]:
    import json
    import urllib.request

    start = time.perf_counter()
    proc, url = serve(folder)
    try:
        while True:
            with urllib.request.urlopen(url + "api/runs") as answer:
                body = json.loads(answer.read())
            if body["runs"] and not body["loading"]:
                break
            time.sleep(0.05)
        ready = time.perf_counter() - start
        out = {"ready": ready}
        for name in ("first", "again"):
            driver.get("about:blank")
            driver.get(url)
            wait_for(driver, "window.__dash.interactiveMs", 60)
            first, interactive = driver.execute_script(
                "return [window.__dash.firstChartMs, window.__dash.interactiveMs]"
            )
            out[name] = first / 1000
            out[name + "_interactive"] = interactive / 1000
        out.update(memory(proc.pid))
        return out
    finally:
        proc.terminate()
        proc.wait(10)


def live_latency(driver, folder: Path, reps: int) -> list[float]:
    folder.mkdir(parents=True, exist_ok=True)
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="live"), log_dir=folder)
    for i in range(100):
        tracker.log_metrics(iteration=i, train_loss=2.0)
        tracker.increment_gradient_step()
    tracker.flush()
    proc, url = serve(folder)
    samples = []
    try:
        driver.get(url)
        key = f"{tracker.run_id}|train_loss"
        wait_for(driver, f"window.__dash.charts.loss && window.__dash.charts.loss.lastX['{key}']")
        for k in range(reps):
            time.sleep(random.uniform(0.05, 0.3))  # land anywhere in the writer's 0.25 s tick
            i = 100 + k
            start = time.perf_counter()
            tracker.log_metrics(iteration=i, train_loss=2.0)
            tracker.increment_gradient_step()
            wait_for(driver, f"window.__dash.charts.loss.lastX['{key}'] === {i + 1}", 10, 0.005)
            samples.append(time.perf_counter() - start)
    finally:
        proc.terminate()
        proc.wait(10)
        tracker.finish()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--data", type=Path, default=Path("/tmp/cs336-bench-dashboard"))
    args = parser.parse_args()
    modes = {"20 runs x 100k rows": args.data / "20x100k", "1 run x 1M rows": args.data / "1x1M"}
    write_runs(modes["20 runs x 100k rows"], 20, 100_000)
    write_runs(modes["1 run x 1M rows"], 1, 1_000_000)
    driver = chrome()
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    try:
        for _ in range(args.reps):
            order = list(modes)
            random.shuffle(order)
            for mode in order:
                results[mode].append(one(driver, modes[mode]))
        live_dir = args.data / f"live-{time.time_ns()}"
        latency = live_latency(driver, live_dir, max(args.reps, 7) * 3)
    finally:
        driver.quit()
    print(f"{args.reps} repetitions, modes in random order; medians (chromium headless, CPU)")
    for mode, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        gain = statistics.median(r["again"] - r["first"] for r in rows)
        print(
            f"  {mode}: server ready {med['ready']:.2f} s | first chart {med['first']:.2f} s "
            f"(interactive {med['first_interactive']:.2f} s) | again {med['again']:.2f} s "
            f"(interactive {med['again_interactive']:.2f} s; paired again-first {gain:+.2f} s) "
            f"| server RSS {med['VmRSS']:.0f} MB, peak {med['VmHWM']:.0f} MB"
        )
    latency.sort()
    print(
        f"  live latency log_metrics -> point on page: median {statistics.median(latency):.2f} s, "
        f"max {latency[-1]:.2f} s over {len(latency)} rows"
    )


if __name__ == "__main__":
    main()
