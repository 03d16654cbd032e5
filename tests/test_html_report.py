"""``cs336-exp report --html FILE``: one self-contained page that opens with the network off
and no server, showing every run (table, curves, config against the baseline, provenance)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest
from dashboard_helpers import chrome, have_chromium, wait_for
from helpers import need

from cs336_basics import ExperimentConfig, ExperimentTracker
from cs336_basics.cli import main
from cs336_basics.dashboard.server import plotly_js
from cs336_basics.runtime import provenance

pytestmark = pytest.mark.skipif(plotly_js() is None, reason="plotly (the dashboard extra) missing")
needs_browser = pytest.mark.skipif(
    not have_chromium() and not os.environ.get("CI"),
    reason="chromium and chromium-driver are not installed (apt-get install chromium "
    "chromium-driver); under CI=true these tests run",
)
#: Chromium with every connection sent to a proxy where nothing listens, and no name
#: resolving: a request for anything remote fails (and is seen by the checks below).
OFFLINE = (
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
WEIRD = '</script><b>lr\'s "x" & y'


def make_runs(logs: Path, rows: int = 400) -> list[ExperimentTracker]:
    runs = []
    for name, lr, group, diverge in (
        ("seed_0", 1e-3, "seeds", None),
        ("seed_1", 1e-3, "seeds", None),
        ("seed_2", 1e-3, "seeds", None),
        ("fast", 5e-3, None, None),
        (WEIRD, 2e-2, None, rows // 2),
    ):
        tracker = ExperimentTracker(
            ExperimentConfig(experiment_name=name, max_learning_rate=lr, seed=len(runs)),
            log_dir=logs,
            group=group,
            tags=["report"],
            provenance=name != "fast",
        )
        for i in range(rows):
            loss = 2 + 3 * math.exp(-i * lr) + 0.05 * math.sin(i + len(runs))
            if diverge is not None and i >= diverge:
                loss = float("nan")
            tracker.log_metrics(iteration=i, train_loss=loss, learning_rate=lr)
            tracker.increment_gradient_step()
            if i % 50 == 49:
                tracker.log_eval(iteration=i, val_loss=loss + 0.1)
        tracker.finish()
        runs.append(tracker)
    return runs


@pytest.fixture
def report(tmp_path: Path, monkeypatch, capsys) -> tuple[Path, list[ExperimentTracker]]:
    monkeypatch.setattr(provenance, "code_folder", lambda: tmp_path)  # not a checkout
    logs = tmp_path / "logs"
    runs = make_runs(logs)
    out = tmp_path / "sent" / "report.html"
    out.parent.mkdir()
    args = ["report", "--html", str(out), "--log-dir", str(logs), "--max-points", "100"]
    assert main([*args, "--baseline", "seed_0"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out} (5 runs, " in said and "points" in said and "MB" in said
    return out, runs


def test_the_file_is_self_contained(report) -> None:
    out, runs = report
    text = out.read_text(encoding="utf-8")
    library = plotly_js().read_text(encoding="utf-8")  # type: ignore[union-attr]
    assert library in text  # the chart library is inlined, whole ...
    own = text.replace(library, "")
    assert not re.search(r"https?://", own)  # ... and nothing else names a remote address
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", own)
    for tracker in runs:
        assert tracker.run_id in own
    # Thinned: each curve at most --max-points points (val curves are short anyway).
    match = re.search(r"Curves: (\d+) curves, ([\d,]+) points", own)
    assert match is not None
    curves, points = int(match.group(1)), int(match.group(2).replace(",", ""))
    assert curves == 5 * 3 and points <= curves * 100


@needs_browser
@pytest.mark.slow
def test_it_opens_offline_and_shows_every_run(report) -> None:
    out, runs = report
    need("selenium")  # (the dev extra) drives chromium
    browser = chrome(1300, 1000, OFFLINE)
    try:
        browser.get(out.as_uri())
        wait_for(browser, "window.__report && window.__report.ready", 30)
        state = browser.execute_script("return window.__report")
        assert state["errors"] == [] and state["mode"] == "band"
        ids = [t.run_id for t in runs]
        # The table lists every run; the name that looks like markup is text, not markup.
        shown = browser.execute_script(
            "return [...document.querySelectorAll('#runs tbody tr')].map(tr => tr.dataset.run)"
        )
        assert shown == ids
        assert WEIRD in browser.find_element("id", "runs").text
        assert not browser.find_elements("css selector", "#runs b")
        # Curves: the group as its mean and band, the other runs each on its own line.
        loss = state["charts"]["loss"]
        assert loss["groups"] == ["seeds"] and sorted(loss["runs"]) == sorted(ids[3:])
        browser.execute_script(
            "const s = document.getElementById('mode'); s.value = 'each';"
            "s.dispatchEvent(new Event('change'))"
        )
        wait_for(browser, "window.__report.mode === 'each'")
        charts = browser.execute_script("return window.__report.charts")
        assert sorted(charts["loss"]["runs"]) == sorted(ids) and charts["loss"]["groups"] == []
        assert sorted(charts["learning_rate"]["runs"]) == sorted(ids)
        traces = browser.execute_script("return document.getElementById('chart-loss').data.length")
        assert traces >= 2 * len(ids)  # train and val of each run (and a diverged mark)
        # Config against the baseline and the provenance of each run.
        config = browser.find_element("id", "config").text
        assert "max_learning_rate" in config and "(baseline)" in config
        details = browser.find_elements("css selector", "details")
        assert len(details) == len(ids)
        assert "not a git repository" in details[0].get_attribute("textContent")
        assert "not recorded" in details[3].get_attribute("textContent")  # provenance off
        # Nothing left the file: every resource the page used is the file itself.
        assert all(e.startswith(("file:", "data:", "blob:")) for e in used(browser))
        # (The check sees a remote load: the same page with one remote image added.)
        probe = out.with_name("probe.html")
        probe.write_text(out.read_text().replace("<h2>Runs</h2>", _REMOTE_IMAGE, 1))
        browser.get(probe.as_uri())
        wait_for(browser, "window.__report && window.__report.ready", 30)
        assert any(e.startswith("https://") for e in used(browser))
        assert browser.execute_script("return document.images[0].naturalWidth") == 0  # failed
    finally:
        browser.quit()


_REMOTE_IMAGE = '<img src="https://example.com/pixel.png" alt="remote"><h2>Runs</h2>'


def used(browser) -> list[str]:
    """Every address the page loaded or tried to (navigation and resources)."""
    return browser.execute_script(
        "return performance.getEntriesByType('navigation').map(e => e.name)"
        ".concat(performance.getEntriesByType('resource').map(e => e.name))"
    )


def test_refuses_a_bad_output_or_metric(tmp_path: Path, capsys) -> None:
    make_runs(tmp_path, rows=60)
    d = ("--log-dir", str(tmp_path))
    assert main(["report", "--html", str(tmp_path / "no" / "r.html"), *d]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", "--html", str(tmp_path / "r.html"), "--metric", "nope", *d]) == 2
    assert "metric: unknown 'nope'" in capsys.readouterr().err
    assert main(["report", "--html", str(tmp_path / "r.html"), "--tag", "nope", *d]) == 2
    assert "no runs" in capsys.readouterr().err
