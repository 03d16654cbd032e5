"""The command line end to end (subprocesses), the plots' data, and the report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_simulated

matplotlib = pytest.importorskip("matplotlib")

from cs336_basics.analysis.plots import close, plot_runs, thin_min_max  # noqa: E402
from cs336_basics.analysis.report import BEGIN, END  # noqa: E402
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    log_dir = tmp_path / "experiment_logs"
    run_simulated(log_dir, "lr_1e-3", lr=1e-3, iters=40)
    run_simulated(log_dir, "lr_3e-3", lr=3e-3, iters=40, batch_size=32)
    run_simulated(log_dir, "blowup", lr=3e-2, iters=40, diverge_at=25)
    run_simulated(log_dir, "dup", iters=10)
    run_simulated(log_dir, "dup", iters=20)
    crashed = ExperimentTracker(ExperimentConfig(experiment_name="crashed"), log_dir=log_dir)
    for i in range(7):
        crashed.log_metrics(iteration=i, train_loss=3.0)
    crashed.close()
    return log_dir


def cli(log_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cs336_basics", *args, "--log-dir", str(log_dir)],
        capture_output=True,
        text=True,
        cwd=cwd or log_dir.parent,
        timeout=120,
    )


def test_list_json_shows_every_run_with_status(logs):
    proc = cli(logs, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    by_run = {r["run"]: r for r in rows}
    assert len(rows) == 6  # both "dup" runs are listed
    assert by_run["crashed"]["status"] == "unfinished" and by_run["crashed"]["iterations"] == 7
    assert by_run["blowup"]["status"] == "diverged"
    assert by_run["lr_1e-3"]["status"] == "finished"
    assert by_run["dup"]["iterations"] == 20  # the name selects the latest
    text = cli(logs, "list").stdout
    assert "crashed" in text and "unfinished" in text


def test_compare_shows_only_differing_config_and_sorts(logs):
    proc = cli(logs, "compare", "lr_*", "--sort", "best_val", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["experiment"] for r in rows] == ["lr_3e-3", "lr_1e-3"]
    assert "max_learning_rate" in rows[0] and "batch_size" in rows[0]
    assert "d_model" not in rows[0]
    assert rows[0]["tokens"] == 32 * 256 * 40


def test_best_never_picks_a_diverged_run(logs):
    proc = cli(logs, "best", "--metric", "train_loss", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["run"] != "blowup"


def test_show_and_export(logs, tmp_path):
    proc = cli(logs, "show", "lr_1e-3", "--rows", "3")
    assert proc.returncode == 0 and "last 3 rows" in proc.stdout
    out = tmp_path / "x.csv"
    proc = cli(logs, "export", "lr_1e-3", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == (
        "iteration,gradient_step,wallclock_time,train_loss,val_loss,"
        "learning_rate,tokens_per_sec,iter_time_ms"
    )
    assert len(lines) == 41


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "no experiment 'nope'"),
        (["best", "--metric", "perplexity"], "perplexity"),
        (["plot", "zzz*", "-o", "x.png"], "no experiment matches 'zzz*'"),
        (["compare", "--sort", "wat"], "unknown column"),
    ],
)
def test_user_errors_are_one_line_without_traceback(logs, args, message):
    proc = cli(logs, *args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_log_dir_is_a_user_error(tmp_path):
    proc = cli(tmp_path / "nowhere", "list")
    assert proc.returncode == 2 and "no log directory" in proc.stderr


def test_plot_cli_writes_a_png(logs, tmp_path):
    out = tmp_path / "curves.png"
    proc = cli(logs, "plot", "lr_*", "blowup", "--x", "wallclock", "--logy", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_data_matches_the_runs(logs):
    from cs336_basics.experiment_analysis import ExperimentAnalyzer

    analyzer = ExperimentAnalyzer(logs)
    analyzer.load_all()
    runs = analyzer.select(["lr_1e-3", "blowup"])
    fig = plot_runs(runs, x="gradient_step", metrics=("train_loss", "val_loss"))
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    train = lines["lr_1e-3 train_loss"]
    expected = analyzer.get("lr_1e-3").metrics_history
    assert list(train.get_xdata()) == [r.gradient_step for r in expected]
    assert list(train.get_ydata()) == [r.train_loss for r in expected]
    val = lines["lr_1e-3 val_loss"]
    assert list(val.get_ydata()) == [r.val_loss for r in expected if r.val_loss is not None]
    mark = lines["blowup diverged"]
    assert list(mark.get_xdata()) == [26.0]  # iteration 25 is gradient step 26
    assert "gradient step" in fig.axes[0].get_xlabel()
    assert not any(math.isnan(y) for y in lines["blowup train_loss"].get_ydata())
    close(fig)


def test_thinning_keeps_spikes():
    xs = list(range(10_000))
    ys = [1.0] * 10_000
    ys[4321] = 50.0
    ys[7000] = -3.0
    tx, ty = thin_min_max(xs, ys, 200)
    assert len(tx) <= 200
    assert 50.0 in ty and -3.0 in ty
    assert tx == sorted(tx)


def test_report_is_idempotent_and_keeps_hand_written_text(logs, tmp_path):
    doc = tmp_path / "EXPERIMENT_LOG.md"
    hand = "# My log\n\nHand-written intro.\n\n"
    tail = "\n\n## Findings\n\nLearning rate 3e-3 wins.\n"
    doc.write_text(f"{hand}{BEGIN}\nold table\n{END}{tail}")
    proc = cli(logs, "report", "--file", str(doc), "--baseline", "lr_1e-3")
    assert proc.returncode == 0, proc.stderr
    first = doc.read_text()
    assert first.startswith(hand) and first.endswith(tail)
    assert "old table" not in first and "| lr_3e-3 |" in first
    assert "batch_size=32" in first and "diverged at 25" in first
    images = sorted((logs / "curves").glob("*.png"))
    assert images and all(p.read_bytes()[:8] == PNG_MAGIC for p in images)
    assert "](experiment_logs/curves/lr_3e-3.png)" in first
    proc = cli(logs, "report", "--file", str(doc), "--baseline", "lr_1e-3")
    assert proc.returncode == 0 and "unchanged" in proc.stdout
    assert doc.read_text() == first


def test_python_dash_m_and_console_script_agree(logs):
    import shutil

    script = shutil.which("cs336-exp", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("console script not installed in this environment")
    a = subprocess.run(
        [script, "list", "--json", "--log-dir", str(logs)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    b = cli(logs, "list", "--json")
    assert a.returncode == b.returncode == 0 and json.loads(a.stdout) == json.loads(b.stdout)
