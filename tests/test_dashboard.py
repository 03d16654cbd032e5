"""``cs336-exp serve``: real runs written by a real tracker, a real server on 127.0.0.1, and
the page driven in a real headless chromium (skipped only outside CI when it is missing)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from dashboard_helpers import (
    chrome,
    have_chromium,
    save_screenshot,
    served,
    wait_for,
    wait_until,
)
from helpers import need, requires, run_simulated

from cs336_basics import load_experiment_log
from cs336_basics.core.row import AXES
from cs336_basics.dashboard.series import ema
from cs336_basics.dashboard.store import RunStore
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker

needs_browser = pytest.mark.skipif(
    not have_chromium() and not os.environ.get("CI"),
    reason="chromium and chromium-driver are not installed (apt-get install chromium "
    "chromium-driver); under CI=true these tests run",
)


def get(server, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def raw_request(server, request: bytes) -> bytes:
    """Send bytes as they are (no client-side normalisation of ``..``)."""
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def live_tracker(log_dir: Path, name: str = "live_run") -> ExperimentTracker:
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name=name, batch_size=8, context_length=16), log_dir=log_dir
    )
    tracker.start()
    for i in range(20):
        tracker.log_metrics(iteration=i, train_loss=3.0 - i * 0.01, learning_rate=1e-3)
        tracker.increment_gradient_step()
    tracker.flush()
    return tracker


@pytest.fixture(scope="module")
def browser():
    if not have_chromium():
        pytest.skip("chromium missing")
    need("selenium")  # (the dev extra) drives it
    need("plotly")  # the page draws with the dashboard extra's plotly
    driver = chrome()
    yield driver
    driver.quit()


# ----------------------------------------------------------------------- no browser


def test_ema_is_the_debiased_formula():
    values = [1.0, 2.0, 3.0]
    w = 0.5
    expected, last = [], 0.0
    for k, v in enumerate(values, start=1):
        last = last * w + (1 - w) * v
        expected.append(last / (1 - w**k))
    assert list(ema(values, w)) == pytest.approx(expected)
    assert ema(values, 0.5)[0] == 1.0  # debiased: starts at the first value, not at 0


def test_store_follows_rotation_and_removal_and_never_writes(tmp_path):
    tracker = live_tracker(tmp_path)
    store = RunStore(tmp_path, interval=60)  # polled by hand here
    store.start()
    try:
        run_id = tracker.run_id
        wait_until(lambda: (store.poll(), store.snapshot(run_id))[1], 20)
        before = listing(tmp_path)
        for i in range(20, 30):
            tracker.log_metrics(iteration=i, train_loss=2.0, learning_rate=1e-3)
            tracker.increment_gradient_step()

        def rows() -> int:
            store.poll()
            data = store.snapshot(run_id)
            return len(data.log.metrics_history) if data else 0

        wait_until(lambda: rows() == 30, 5)
        tracker.save()  # the journal is replaced by a fresh one
        for i in range(30, 40):
            tracker.log_metrics(iteration=i, train_loss=1.5)
            tracker.increment_gradient_step()
        tracker.log_eval(iteration=39, val_loss=1.7)
        wait_until(lambda: rows() == 40, 10)
        data = store.snapshot(run_id)
        assert data.log.status == "running"
        assert data.log.metrics_history[39].val_loss == 1.7
        tracker.finish()  # the journal is removed, the document completed
        wait_until(lambda: rows() == 40 and store.snapshot(run_id).log.status == "finished", 10)
        assert store.snapshot(run_id).log.best_val_loss == 1.7
        # The store never wrote: every file it saw was written by the tracker.
        assert not [n for n in listing(tmp_path) if n not in before and run_id not in n]
    finally:
        store.stop()


def test_thinning_keeps_a_spike_and_range_requests(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="spiky"), log_dir=tmp_path)
    for i in range(50_000):
        tracker.log_metrics(iteration=i, train_loss=50.0 if i == 31_337 else 2.0)
        tracker.increment_gradient_step()
    tracker.finish()
    with served(tmp_path) as server:
        wait_until(lambda: get(server, "/api/runs")[1]["runs"][0].get("rows") == 50_000, 20)
        run = tracker.run_id
        status, body = get(server, f"/api/series?metric=train_loss&runs={run}&points=400")
        assert status == 200
        curve = body["series"][0]
        assert len(curve["x"]) <= 400 and max(curve["y"]) == 50.0
        assert curve["points"] == 50_000
        status, body = get(
            server, f"/api/series?metric=train_loss&runs={run}&points=400&x0=31000&x1=32000"
        )
        zoomed = body["series"][0]
        assert 31_000 - 1 <= zoomed["x"][0] and zoomed["x"][-1] <= 32_000 + 1
        assert max(zoomed["y"]) == 50.0 and zoomed["in_range"] < 1010


def test_bad_requests_are_refused_without_traceback(tmp_path):
    run_simulated(tmp_path, "ok", iters=10)
    before = listing(tmp_path)
    with served(tmp_path) as server:
        wait_until(lambda: get(server, "/api/runs")[1]["runs"][0].get("rows"), 20)
        run = get(server, "/api/runs")[1]["ids"][0]
        cases = {
            "/api/series?metric=train_loss&runs=..%2F..%2Fetc%2Fpasswd": 404,
            f"/api/series?metric=train_loss&runs={run}&x=../../etc": 400,
            f"/api/series?metric=train_loss&runs={run}&points=abc": 400,
            f"/api/series?metric=train_loss&runs={run}&points=1e999": 400,
            f"/api/series?metric=train_loss&runs={run}&smoothing=nan": 400,
            f"/api/series?metric=train_loss&runs={run}&x0=5&x1=1": 400,
            f"/api/series?metric=train_loss&runs={run}&x=iteration&x=tokens": 400,
            "/api/series?metric=train_loss": 400,
            "/api/series?runs=" + run: 400,
            "/static/..%2f..%2fserver.py": 404,
            "/static/%2e%2e/server.py": 404,
            "/etc/passwd": 404,
        }
        for path, code in cases.items():
            status, body = get(server, path)
            assert status == code, (path, body)
            assert "error" in body and "Traceback" not in json.dumps(body)
        for request in (
            b"GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /static/../../tracking/cli.py HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"POST /api/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GARBAGE / HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"GET /api/series?metric=%ff%fe&runs=%00 HTTP/1.1\r\nConnection: close\r\n\r\n",
        ):
            answer = raw_request(server, request)
            status = int(answer.split(b" ", 2)[1])
            assert 400 <= status < 500, (request, answer[:200])
            assert b"Traceback" not in answer and b"root:" not in answer
    assert listing(tmp_path) == before  # nothing written into the log dir


def test_cli_serve_refuses_remote_host_and_missing_dir(tmp_path):
    cmd = [sys.executable, "-m", "cs336_basics", "serve", "--log-dir", str(tmp_path)]
    proc = subprocess.run([*cmd, "--host", "0.0.0.0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--allow-remote" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "cs336_basics", "serve", "--log-dir", str(tmp_path / "no")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "no such directory" in proc.stderr


@requires("plotly")  # it serves plotly.min.js
def test_cli_serve_prints_the_url_and_serves(tmp_path):
    run_simulated(tmp_path, "from_cli", iters=5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cs336_basics", "serve", "--log-dir", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split(" at ", 1)[1].split()[0]

        def names():
            with urllib.request.urlopen(url + "api/runs", timeout=5) as answer:
                return [r["name"] for r in json.loads(answer.read())["runs"]]

        assert wait_until(lambda: names() == ["from_cli"], 20)
        with urllib.request.urlopen(url + "vendor/plotly.min.js", timeout=5) as answer:
            assert answer.status == 200 and len(answer.read()) > 1_000_000
        workers = _children(proc.pid)
        assert workers  # the run was decoded in worker processes
        proc.terminate()  # `kill PID`: stops as Ctrl-C does, workers included
        proc.wait(10)
        assert wait_until(lambda: not any(_alive(pid) for pid in workers), 15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_requests_naming_another_host_are_refused(tmp_path):
    # A page elsewhere reaching 127.0.0.1 through DNS rebinding sends its own host name.
    run_simulated(tmp_path, "private", iters=3)
    with served(tmp_path) as server:
        port = server.server_address[1]
        for host, status in (
            (f"attacker.example:{port}", b"403"),
            (f"127.0.0.1:{port}", b"200"),
            (f"localhost:{port}", b"200"),
        ):
            answer = raw_request(
                server,
                f"GET /api/runs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(),
            )
            assert answer.split(b" ", 2)[1] == status, (host, answer[:200])


# ----------------------------------------------------------------------- in the browser


@needs_browser
def test_page_lists_runs_and_shows_a_live_row_within_a_second(tmp_path, browser):
    run_simulated(tmp_path, "lr_1e-3", iters=300, lr=1e-3)
    run_simulated(tmp_path, "lr_3e-3", iters=300, lr=3e-3, d_model=256)
    run_simulated(tmp_path, "diverging", iters=300, lr=1e-2, diverge_at=150)
    tracker = live_tracker(tmp_path)
    live = tracker.run_id
    with served(tmp_path) as server:
        browser.get(server.url)
        wait_for(  # (the page lists runs still loading first, by id)
            browser,
            "Object.keys(window.__dash.runs).length === 4 && "
            "Object.values(window.__dash.runs).every(r => r.status !== 'loading')",
        )
        statuses = browser.execute_script(
            "return Object.fromEntries(Object.values(window.__dash.runs).map("
            "r => [r.name, r.status]))"
        )
        assert statuses == {
            "lr_1e-3": "finished",
            "lr_3e-3": "finished",
            "diverging": "diverged",
            "live_run": "running",
        }
        wait_for(browser, "window.__dash.charts.loss && window.__dash.charts.loss.series >= 7")
        diverged = browser.execute_script("return window.__dash.charts.loss.diverged")
        assert [d["x"] for d in diverged if d["metric"] == "train_loss"] == [151]  # its step
        table = browser.find_element("id", "runs").text
        assert "d_model" in table and "diverged" in table  # config that differs; status

        # Live: rows logged now show on the open page, through the journal, within 1 s.
        key = f"{live}|train_loss"
        for i in range(20, 23):
            tracker.log_metrics(iteration=i, train_loss=2.5, learning_rate=1e-3)
            tracker.increment_gradient_step()
            start = time.perf_counter()
            tracker._saves.journal.wake()  # noqa: SLF001 (the writer's 0.25 s tick, not waited for)
            wait_for(browser, f"window.__dash.charts.loss.lastX['{key}'] === {i + 1}", 5)
            assert time.perf_counter() - start < 1.0

        # A save replaces the journal; rows after it still arrive; finish removes it.
        tracker.save()
        tracker.log_metrics(iteration=23, train_loss=2.4)
        wait_for(browser, f"window.__dash.charts.loss.lastX['{key}'] === 24", 5)
        tracker.finish()
        wait_for(browser, f"window.__dash.runs['{live}'].status === 'finished'", 5)

        # x-axis: iteration is one less than the (1-based) gradient step; tokens x 128.
        select = browser.find_element("id", "x")
        select.send_keys("iteration")
        wait_for(browser, f"window.__dash.charts.loss.lastX['{key}'] === 23")
        browser.execute_script(
            "const s = document.getElementById('x'); s.value = 'tokens';"
            "s.dispatchEvent(new Event('change'))"
        )
        wait_for(browser, f"window.__dash.charts.loss.lastX['{key}'] === {24 * 8 * 16}")
        browser.execute_script(
            "const s = document.getElementById('x'); s.value = 'gradient_step';"
            "s.dispatchEvent(new Event('change'))"
        )
        wait_for(browser, f"window.__dash.charts.loss.lastX['{key}'] === 24")

        # Smoothing: off, then on; the smoothed curve is drawn beside the raw one.
        set_smoothing = (
            "const s = document.getElementById('smoothing'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('input'))"
        )
        browser.execute_script(set_smoothing, "0")
        wait_for(browser, "Object.keys(window.__dash.charts.loss.smoothed).length === 0")
        browser.execute_script(set_smoothing, "0.9")
        wait_for(browser, f"window.__dash.charts.loss.smoothed['{key}'] > 0")
        browser.execute_script("window.scrollTo(0, 0)")
        shot = save_screenshot(browser, tmp_path / "dashboard.png")
        assert shot.stat().st_size > 20_000
        assert not browser.execute_script("return window.__dash.errors")


@needs_browser
def test_a_million_row_run_loads_and_redraws_quickly(tmp_path, browser):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="million"), log_dir=tmp_path)
    log = tracker.log_metrics
    step = tracker.increment_gradient_step
    for i in range(1_000_000):
        log(iteration=i, train_loss=2.0 + (i % 97) * 0.001 + (5.0 if i == 777_777 else 0.0))
        step()
    tracker.finish()
    with served(tmp_path) as server:
        wait_until(lambda: get(server, "/api/runs")[1]["runs"][0].get("rows"), 60)
        browser.get(server.url)
        wait_for(browser, "window.__dash.charts.loss && window.__dash.charts.loss.series === 1", 60)
        # The curves were drawn on a canvas first, while plotly loaded; then plotly's chart
        # took the canvas's place.
        first, interactive, previews, canvases = browser.execute_script(
            "const d = window.__dash; return [d.firstChartMs, d.interactiveMs, d.previews, "
            "document.querySelectorAll('canvas.preview').length]"
        )
        assert previews >= 1 and first < interactive and canvases == 0
        points = browser.execute_script("return window.__dash.charts.loss.points")
        assert 100 < list(points.values())[0] <= 4000  # thinned on the server
        # Zoom in by relayout (what a drag does): the server thins the range; then reset.
        draws = browser.execute_script("return window.__dash.draws")
        start = time.perf_counter()
        browser.execute_script(
            "Plotly.relayout(document.querySelector('.plot'), {'xaxis.range': [700000, 800000]})"
        )
        wait_for(browser, f"window.__dash.draws > {draws} && window.__dash.charts.loss.range", 10)
        zoom_s = time.perf_counter() - start
        rng = browser.execute_script("return window.__dash.charts.loss.range")
        assert rng == [700000, 800000]
        assert zoom_s < 2.0, zoom_s  # generous: the benchmark has the figures
        draws = browser.execute_script("return window.__dash.draws")
        browser.execute_script(
            "Plotly.relayout(document.querySelector('.plot'), {'xaxis.autorange': true})"
        )
        wait_for(browser, f"window.__dash.draws > {draws} && !window.__dash.charts.loss.range")


def test_thin_min_max_picks_what_min_and_max_over_positions_pick():
    """The slice-based thinning keeps the points the plain definition keeps (ties, NaN first,
    -0.0/0.0, ints), for lists and arrays."""
    import random
    from array import array

    from cs336_basics.analysis.plots import thin_min_max

    def reference(xs, ys, max_points):
        n = len(xs)
        if n <= max_points:
            return list(xs), list(ys)
        bins = max(1, max_points // 2)
        out_x, out_y = [], []
        for b in range(bins):
            lo, hi = b * n // bins, (b + 1) * n // bins
            if lo < hi:
                i_min = min(range(lo, hi), key=lambda i: ys[i])
                i_max = max(range(lo, hi), key=lambda i: ys[i])
                for i in sorted({i_min, i_max}):
                    out_x.append(xs[i])
                    out_y.append(ys[i])
        return out_x, out_y

    rng = random.Random(7)
    pool = [0.0, -0.0, 1.0, 1, 2.5, float("nan"), float("inf"), -float("inf"), 3]
    for _ in range(2000):
        n = rng.randint(1, 200)
        ys = [rng.choice(pool) if rng.random() < 0.5 else rng.random() for _ in range(n)]
        if rng.random() < 0.5:
            ys = array("d", ys)
        xs = range(n) if rng.random() < 0.5 else [float(i) for i in range(n)]
        points = rng.randint(1, 50)
        assert repr(thin_min_max(xs, ys, points)) == repr(reference(xs, ys, points))


def test_series_of_every_run_names_the_runs(tmp_path):
    run_simulated(tmp_path, "a", iters=10)
    run_simulated(tmp_path, "b", iters=10)
    with served(tmp_path) as server:
        wait_until(lambda: all(r.get("rows") for r in get(server, "/api/runs")[1]["runs"]), 20)
        ids = get(server, "/api/runs")[1]["ids"]
        status, body = get(server, "/api/series?metric=train_loss&runs=*")
        assert status == 200 and body["runs"] == ids == sorted(s["run"] for s in body["series"])


# ----------------------------------------------------------------------- numbers on the page


def _cells(browser, run_id: str) -> dict[str, str]:
    """The runs table's cells of one run, by the payload key of their column."""
    return browser.execute_script(
        'const tr = document.querySelector(`#runs tbody tr[data-id="${arguments[0]}"]`);'
        "return tr && Object.fromEntries([...tr.cells].map(c => [c.dataset.key, c.textContent]))",
        run_id,
    )


@needs_browser
@pytest.mark.slow
def test_page_shows_the_numbers_the_command_line_shows(tmp_path, browser, capsys):
    """Runs killed (SIGKILL) at random points show on the page the best and last losses that
    `cs336-exp list` shows (RunResults, computed once); two runs of one name are told apart
    by run id and start time; a run's W&B mirror status is shown."""
    from killed_runs import killed_runs

    from cs336_basics.cli import main

    killed = killed_runs(tmp_path, count=3, seed=5)
    run_simulated(tmp_path, "twin", iters=20)
    time.sleep(1.1)  # the second "twin" starts in a later second: another start time
    mirrored = ExperimentTracker(ExperimentConfig(experiment_name="twin"), log_dir=tmp_path)
    for i in range(25):
        mirrored.log_metrics(iteration=i, train_loss=2.0 + 1 / (i + 1))
    mirrored.log_eval(iteration=24, val_loss=2.5)
    mirrored.log.mirrors["wandb"] = {"status": "finished", "mode": "offline", "run_id": "abc"}
    mirrored.finish()
    assert main(["list", "--json", "--log-dir", str(tmp_path)]) == 0
    listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert sorted(r["run"].split("_20")[0] for r in listed.values()) == sorted(
        [*killed, "experiment_twin", "twin"]
    )  # the older twin is listed by its run id
    with served(tmp_path) as server:
        browser.get(server.url)
        wait_for(
            browser,
            f"Object.keys(window.__dash.runs).length === {len(listed)} && "
            "Object.values(window.__dash.runs).every(r => r.status === 'finished' || "
            "r.status === 'unfinished')",
            20,
        )
        page = browser.execute_script("return window.__dash.runs")
        for run_id, record in listed.items():
            shown = page[run_id]
            assert shown["status"] == record["status"]
            for key, page_key in (
                ("best_train_loss", "best_train_loss"),
                ("best_val_loss", "best_val_loss"),
                ("final_train_loss", "last_train_loss"),
                ("final_val_loss", "last_val_loss"),
            ):
                assert record[key] is not None and shown[page_key] == record[key], (run_id, key)
            cells = _cells(browser, run_id)
            assert cells["id"] == run_id
            assert cells["start_time"] == record["start_time"][:19].replace("T", " ")
            for page_key, key in (("best_val_loss", "best_val_loss"), ("last_val_loss",
                                  "final_val_loss")):  # fmt: skip
                assert float(cells[page_key]) == float(f"{record[key]:.4g}"), (run_id, cells)
            expected_mirror = "offline" if run_id == mirrored.run_id else ""
            assert cells["mirror"] == expected_mirror
        starts = {_cells(browser, i)["start_time"] for i in listed if "twin" in i}
        assert len(starts) == 2  # the two "twin" runs, told apart
        assert not browser.execute_script("return window.__dash.errors")


@needs_browser
def test_learning_rate_chart_is_never_smoothed(tmp_path, browser):
    """The default smoothing (0.6) smooths the loss chart but not the learning rate, whose
    peak stays at the last warmup step."""
    warmup, steps = 20, 200
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="sched"), log_dir=tmp_path)
    for i in range(steps):
        if i < warmup:
            lr = 1e-3 * (i + 1) / warmup
        else:
            lr = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * (i - warmup) / steps))
        tracker.log_metrics(iteration=i, train_loss=3.0 + (i % 5) * 0.1, learning_rate=lr)
        tracker.increment_gradient_step()
    tracker.finish()
    key = f"{tracker.run_id}|learning_rate"
    with served(tmp_path) as server:
        browser.get(server.url)
        wait_for(browser, "window.__dash.charts.learning_rate && window.__dash.charts.loss", 20)
        assert browser.execute_script("return window.__dash.smoothing") == 0.6
        loss = browser.execute_script("return window.__dash.charts.loss")
        assert loss["smoothed"].get(f"{tracker.run_id}|train_loss", 0) > 0
        chart = browser.execute_script("return window.__dash.charts.learning_rate")
        assert chart["smoothed"] == {} and chart["smoothing"] == 0 and chart["points"][key] == 200
        traces = browser.execute_script(
            "const card = [...document.querySelectorAll('.chart')].find("
            "  c => c.querySelector('h2').textContent === 'learning rate');"
            "return card.querySelector('.plot').data.map(t => ({name: t.name, x: t.x, y: t.y}))"
        )
        assert [t["name"] for t in traces] == ["sched learning_rate"]  # no raw + smoothed pair
        xs, ys = traces[0]["x"], traces[0]["y"]
        assert xs[ys.index(max(ys))] == warmup  # the peak: gradient step 20 (iteration 19)
        assert max(ys) == pytest.approx(1e-3)
        # Moving the slider smooths the loss again, never the learning rate.
        draws = browser.execute_script("return window.__dash.draws")
        browser.execute_script(
            "const s = document.getElementById('smoothing'); s.value = '0.95';"
            "s.dispatchEvent(new Event('input'))"
        )
        wait_for(  # both charts redrawn (one after the other, loss first)
            browser,
            f"window.__dash.draws >= {draws + 2} && window.__dash.charts.loss.smoothing === 0.95",
        )
        chart = browser.execute_script("return window.__dash.charts.learning_rate")
        assert chart["smoothed"] == {} and chart["smoothing"] == 0


# ----------------------------------------------------------------------- groups and filters


def _grouped_runs(log_dir: Path) -> dict[str, str]:
    """Two seeds of one group and a run of its own; returns run ids by name."""
    ids = {}
    for name, group, tags, offset in (
        ("seed_0", "seeds", ["sweep"], 0.0),
        ("seed_1", "seeds", ["sweep"], 0.4),
        ("alone", None, ["baseline"], 1.0),
    ):
        tracker = ExperimentTracker(
            ExperimentConfig(experiment_name=name), log_dir=log_dir, group=group, tags=tags
        )
        for i in range(100):
            tracker.log_metrics(iteration=i, train_loss=3.0 - i / 100 + offset, learning_rate=1e-3)
            tracker.increment_gradient_step()
        tracker.log_eval(iteration=99, val_loss=2.5 + offset)
        tracker.finish()
        ids[name] = tracker.run_id
    return ids


def test_bands_api_draws_a_group_as_its_mean_and_band(tmp_path):
    ids = _grouped_runs(tmp_path)
    with served(tmp_path) as server:
        wait_until(lambda: all(r.get("rows") for r in get(server, "/api/runs")[1]["runs"]), 20)
        runs = {r["name"]: r for r in get(server, "/api/runs")[1]["runs"]}
        assert runs["seed_0"]["group"] == "seeds" and runs["alone"]["tags"] == ["baseline"]
        status, body = get(server, "/api/bands?metric=train_loss&runs=*&points=400")
        assert status == 200
        (found,) = body["bands"]
        assert found["group"] == "seeds" and sorted(found["runs"]) == sorted(
            [ids["seed_0"], ids["seed_1"]]
        )
        assert found["n"] == [2] * 100 and found["x"][:2] == [1.0, 2.0]
        assert found["mean"][0] == pytest.approx(3.2) and found["low"][0] == pytest.approx(3.0)
        assert found["high"][0] == pytest.approx(3.4) and found["std"][0] == pytest.approx(0.2)
        only = f"/api/bands?metric=train_loss&runs={ids['alone']}"
        assert get(server, only)[1]["bands"] == []  # no group: no band
        assert get(server, "/api/bands?metric=train_loss&runs=nope")[0] == 404
        assert get(server, "/api/bands?metric=train_loss&runs=*&points=x")[0] == 400


@needs_browser
@pytest.mark.slow
def test_page_groups_runs_and_filters_by_tag_and_group(tmp_path, browser):
    ids = _grouped_runs(tmp_path)
    with served(tmp_path) as server:
        browser.get(server.url)
        wait_for(browser, "window.__dash.charts.loss && window.__dash.charts.loss.bands", 20)
        wait_for(browser, "Object.keys(window.__dash.charts.loss.bands).length === 2", 20)
        loss = browser.execute_script("return window.__dash.charts.loss")
        band = loss["bands"]["seeds|train_loss"]
        assert sorted(band["runs"]) == sorted([ids["seed_0"], ids["seed_1"]])
        assert list(loss["lastX"]) == [f"{ids['alone']}|train_loss", f"{ids['alone']}|val_loss"]
        cells = _cells(browser, ids["seed_0"])
        assert cells["group"] == "seeds" and cells["tags"] == "sweep"
        # Each run on its own line.
        browser.execute_script(
            "const s = document.getElementById('group-mode'); s.value = 'each';"
            "s.dispatchEvent(new Event('change'))"
        )
        wait_for(browser, "Object.keys(window.__dash.charts.loss.lastX).length === 6")
        assert browser.execute_script("return window.__dash.charts.loss.bands") == {}
        # Filters: a tag, then a group (choices are the runs' own).
        choices = browser.execute_script(
            "return [...document.getElementById('tag-filter').options].map(o => o.value)"
        )
        assert choices == ["", "baseline", "sweep"]
        browser.execute_script(
            "const s = document.getElementById('tag-filter'); s.value = 'baseline';"
            "s.dispatchEvent(new Event('change'))"
        )
        wait_for(browser, "Object.keys(window.__dash.charts.loss.lastX).length === 2")
        rows = browser.execute_script(
            "return [...document.querySelectorAll('#runs tbody tr')].map(tr => tr.dataset.id)"
        )
        assert rows == [ids["alone"]]
        browser.execute_script(
            "for (const [id, v] of [['tag-filter', ''], ['group-filter', 'seeds']]) {"
            "  const s = document.getElementById(id); s.value = v;"
            "  s.dispatchEvent(new Event('change')); }"
        )
        wait_for(
            browser,
            "document.querySelectorAll('#runs tbody tr').length === 2 && "
            "Object.keys(window.__dash.charts.loss.lastX).length === 4",
        )
        assert not browser.execute_script("return window.__dash.errors")


# ----------------------------------------------------------------------- what a researcher watches


def _watched_run(log_dir: Path) -> ExperimentTracker:
    """A run with system samples (psutil, every 50 ms), a loss spike at iterations 60-64,
    a gradient-norm explosion from 80 and two evals."""
    pytest.importorskip("psutil", reason="system metrics need psutil (the system extra)")
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="watched", batch_size=8, context_length=16),
        log_dir=log_dir,
        system_interval=0.05,
    )
    tracker.start()
    for i in range(100):
        loss = 3.0 - 0.005 * i + 0.01 * math.sin(i) + (4.0 if 60 <= i < 65 else 0.0)
        norm = 1.0 + 0.05 * math.cos(i) + (30.0 if i >= 80 else 0.0)
        tracker.log_metrics(iteration=i, train_loss=loss, grad_norm=norm, learning_rate=1e-3)
        if i in (49, 99):
            tracker.log_eval(iteration=i, val_loss=2.5 - i / 1000)
        tracker.increment_gradient_step()
    wait_until(lambda: len(tracker.log.system_history) >= 3, 20)
    tracker.finish()
    return tracker


def test_api_serves_system_series_alert_marks_and_values_at_a_budget(tmp_path):
    tracker = _watched_run(tmp_path)
    log = load_experiment_log(tracker.path)
    run = tracker.run_id
    step_of = {r.iteration: r.gradient_step for r in log.metrics_history}
    with served(tmp_path) as server:
        wait_until(lambda: all(r.get("rows") for r in get(server, "/api/runs")[1]["runs"]), 20)
        (row,) = get(server, "/api/runs")[1]["runs"]
        assert row["alerts"] == 2 and row["mfu"] is None
        assert {"proc.rss_gib", "host.mem_used_gib", "proc.cpu_percent"} <= set(
            row["system_metrics"]
        )
        # System samples: their own series, read from system_history, never the rows.
        status, body = get(
            server, f"/api/series?metric=proc.rss_gib&runs={run}&source=system&smoothing=0"
        )
        assert status == 200 and body["source"] == "system"
        (curve,) = body["series"]
        samples = log.system_history
        assert curve["points"] == len(samples)
        assert curve["y"] == [s.extra["proc.rss_gib"] for s in samples]
        assert curve["x"] == [float(s.gradient_step) for s in samples]
        assert get(server, f"/api/series?metric=proc.rss_gib&runs={run}")[1]["series"] == []
        # Alerts ride on the curve of their metric, where the event began.
        loss = get(server, f"/api/series?metric=train_loss&runs={run}")[1]["series"][0]
        assert [(a["kind"], a["iteration"], a["x"]) for a in loss["alerts"]] == [
            ("spike", 60, step_of[60])
        ]
        norm = get(server, f"/api/series?metric=grad_norm&runs={run}&x=iteration")[1]
        assert [(a["kind"], a["x"]) for a in norm["series"][0]["alerts"]] == [("explosion", 80)]
        # The budget cursor: the last value at or before the x, and how far before.
        status, body = get(server, f"/api/at?runs={run}&x=gradient_step&at=75.5")
        assert status == 200
        values = body["runs"][0]["values"]
        at_75 = next(r for r in log.metrics_history if r.gradient_step == 75)
        assert values["train_loss"]["value"] == at_75.train_loss
        assert values["train_loss"]["before"] == 0.5 and values["train_loss"]["how"] == "before"
        assert values["val_loss"]["value"] == pytest.approx(2.451)  # the eval at 49
        assert values["val_loss"]["iteration"] == 49
        far = get(server, f"/api/at?runs={run}&x=tokens&at=1e12")[1]["runs"][0]["values"]
        assert far["train_loss"]["how"] == "not_reached" and far["train_loss"]["value"] is None
        for bad in (
            f"/api/at?runs={run}&at=x",
            f"/api/at?runs={run}&at=1&interpolate=2",
            f"/api/at?runs={run}&at=1&x=epoch",
            f"/api/series?metric=proc.rss_gib&runs={run}&source=gpu",
        ):
            status, body = get(server, bad)
            assert status == 400 and body["error"], bad


@needs_browser
@pytest.mark.slow
def test_page_shows_system_charts_alert_markers_and_the_budget_cursor(tmp_path, browser):
    tracker = _watched_run(tmp_path)
    run = tracker.run_id
    with served(tmp_path) as server:
        browser.get(server.url)
        wait_for(browser, "window.__dash.charts['sys:proc.rss_gib']", 20)
        wait_for(browser, "window.__dash.charts.loss && window.__dash.charts.grad_norm", 20)
        system = browser.execute_script(
            "const s = document.getElementById('system-section');"
            "return {hidden: s.hidden, titles: [...s.querySelectorAll('.chart h2')]"
            "  .map(h => h.textContent)}"
        )
        assert not system["hidden"] and "proc.rss_gib" in system["titles"]
        chart = browser.execute_script("return window.__dash.charts['sys:proc.rss_gib']")
        assert chart["points"][f"{run}|proc.rss_gib"] == len(tracker.log.system_history)
        assert "sys:proc.rss_gib" not in browser.execute_script(  # not among the training charts
            "return [...document.querySelectorAll('#charts .chart h2')].map(h => h.textContent)"
        )
        # Alert markers: a dotted line where each event began, on its metric's chart.
        loss = browser.execute_script("return window.__dash.charts.loss.alerts")
        assert [(a["kind"], a["metric"], a["iteration"]) for a in loss] == [
            ("spike", "train_loss", 60)
        ]
        norm = browser.execute_script("return window.__dash.charts.grad_norm.alerts")
        assert [(a["kind"], a["iteration"]) for a in norm] == [("explosion", 80)]
        shapes = browser.execute_script(
            "const card = [...document.querySelectorAll('.chart')].find("
            "  c => c.querySelector('h2').textContent === 'train / val loss');"
            "return card.querySelector('.plot').layout.shapes"
        )
        assert [(s["x0"], s["line"]["dash"]) for s in shapes] == [(loss[0]["x"], "dot")]
        cells = _cells(browser, run)
        assert cells["alerts"] == "2"
        # The budget cursor: every shown run's losses at an x, and a line on every chart.
        browser.execute_script(
            "const a = document.getElementById('at'); a.value = '75.5';"
            "a.dispatchEvent(new Event('change'))"
        )
        cursor, _ = wait_for(browser, "window.__dash.cursor")
        assert cursor["at"] == 75.5 and cursor["x"] == "gradient_step"
        assert cursor["runs"][run]["train_loss"]["before"] == 0.5
        assert cursor["runs"][run]["val_loss"]["iteration"] == 49
        text = browser.execute_script("return document.getElementById('cursor').innerText")
        before = cursor["runs"][run]["val_loss"]["before"]
        assert "watched" in text and f"2.451 ({before:g} before)" in text
        wait_for(browser, "window.__dash.charts.loss.cursor === 75.5")
        # Unticking the run empties the cursor's table (it lists the shown runs only).
        browser.execute_script(
            f"document.querySelector('#runs tbody tr[data-id=\"{run}\"] input').click()"
        )
        wait_for(browser, "window.__dash.cursor === null")
        assert browser.execute_script("return document.getElementById('cursor').hidden")
        axes = browser.execute_script(
            "return [...document.getElementById('x').options].map(o => o.value)"
        )
        assert sorted(axes) == sorted(AXES)  # the server's axes, FLOPs included
        save_screenshot(browser, tmp_path / "watched.png")
        assert not browser.execute_script("return window.__dash.errors")
