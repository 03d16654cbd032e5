"""The command line end to end (subprocesses), the plots' data, and the report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import requires, run_simulated

from cs336_basics.analysis.plots import close, plot_runs, thin_min_max
from cs336_basics.analysis.report import BEGIN, END
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker

needs_matplotlib = requires("matplotlib")  # plots, and the report's figures

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


@needs_matplotlib
def test_plot_cli_writes_a_png(logs, tmp_path):
    out = tmp_path / "curves.png"
    proc = cli(logs, "plot", "lr_*", "blowup", "--x", "wallclock", "--logy", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == PNG_MAGIC


@needs_matplotlib
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


@needs_matplotlib
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


# --------------------------------------------------------------------------- labels and options


@needs_matplotlib
def test_plot_labels_say_what_is_drawn(tmp_path):
    byte_level = run_simulated(tmp_path, "bytes", iters=12, vocab_size=256, finish=False)
    byte_level.log_metrics(iteration=12, train_loss=2.0, grad_norm=0.7)
    byte_level.finish()
    run_simulated(tmp_path, "bpe", iters=12, vocab_size=10000)
    from cs336_basics.experiment_analysis import ExperimentAnalyzer

    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    cases = [
        (["bytes"], ("grad_norm",), "grad norm", "Grad norm vs gradient step"),
        (["bytes"], ("train_loss", "val_loss"), "loss (nats/byte)", "Loss vs gradient step"),
        (["bpe"], ("val_loss",), "loss (nats/token)", "Loss vs gradient step"),
        (["bytes", "bpe"], ("train_loss",), "loss (nats/token)", "Loss vs"),  # mixed vocabs
        (["bytes"], ("learning_rate", "train_loss"), "learning rate, train loss", "Learning"),
    ]
    for names, metrics, ylabel, title in cases:
        fig = plot_runs(analyzer.select(names), metrics=metrics)
        ax = fig.axes[0]
        assert ax.get_ylabel() == ylabel, (metrics, ax.get_ylabel())
        assert ax.get_title().startswith(title), ax.get_title()
        if metrics == ("grad_norm",):  # not a loss: no word of one
            assert "loss" not in (ax.get_title() + ax.get_ylabel()).lower()
        close(fig)


@needs_matplotlib
def test_plot_tokens_axis_from_the_command_line(logs, tmp_path):
    out = tmp_path / "tokens.png"
    proc = cli(logs, "plot", "lr_3e-3", "--x", "tokens", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == PNG_MAGIC
    from cs336_basics.experiment_analysis import ExperimentAnalyzer

    analyzer = ExperimentAnalyzer(logs)
    analyzer.load_all(quiet=True)
    fig = plot_runs(analyzer.select(["lr_3e-3"]), x="tokens", metrics=("train_loss",))
    (line,) = fig.axes[0].get_lines()
    steps = [r.gradient_step for r in analyzer.get("lr_3e-3").metrics_history]
    assert list(line.get_xdata()) == [s * 32 * 256 for s in steps]  # batch 32 x context 256
    assert fig.axes[0].get_xlabel() == "tokens seen"
    close(fig)


@pytest.mark.parametrize("points", ["0", "-5", "1"])
def test_plot_refuses_max_points_below_two(logs, tmp_path, points):
    out = tmp_path / "x.png"
    proc = cli(logs, "plot", "lr_*", "--max-points", points, "-o", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"--max-points {points}: expected" in proc.stderr and "2 or more" in proc.stderr
    assert not out.exists()


def test_plot_runs_refuses_max_points_below_two(logs):
    from cs336_basics.core.errors import UsageError
    from cs336_basics.experiment_analysis import ExperimentAnalyzer

    analyzer = ExperimentAnalyzer(logs)
    analyzer.load_all(quiet=True)
    for bad in (0, -5, 1, 2.5, True):
        with pytest.raises(UsageError, match="max_points"):
            plot_runs(analyzer.select(["lr_1e-3"]), max_points=bad)


def test_unknown_metric_lists_metrics_not_axes(logs, tmp_path):
    proc = cli(logs, "plot", "lr_*", "--metric", "nope", "-o", str(tmp_path / "x.png"))
    assert proc.returncode == 2
    available = proc.stderr.split("available:")[1]
    names = [n.strip() for n in available.split(",")]
    assert "train_loss" in names and "learning_rate" in names
    assert not {"iteration", "gradient_step", "wallclock_time"} & set(names), names


@needs_matplotlib
def test_report_writes_into_the_log_dir_by_default(logs, tmp_path):
    """A first `cs336-exp report` never rewrites the EXPERIMENT_LOG.md of the folder it is
    run in (the project's own log): it writes LOG_DIR/EXPERIMENT_LOG.md and LOG_DIR/curves."""
    project_log = logs.parent / "EXPERIMENT_LOG.md"
    committed = f"# Project log\n\n{BEGIN}\n| committed table |\n{END}\n\n![](docs/curves/a.png)\n"
    project_log.write_text(committed)
    proc = cli(logs, "report", cwd=logs.parent)
    assert proc.returncode == 0, proc.stderr
    assert project_log.read_text() == committed
    written = logs / "EXPERIMENT_LOG.md"
    assert proc.stdout.startswith(f"created: {written}")
    text = written.read_text()
    assert "| lr_3e-3 |" in text and "](curves/lr_3e-3.png)" in text
    assert "](curves/all_runs.png)" in text
    assert (logs / "curves" / "lr_3e-3.png").read_bytes()[:8] == PNG_MAGIC
    assert not (logs.parent / "curves").exists()


def test_report_without_runs_dir_says_so(tmp_path):
    proc = cli(tmp_path / "nowhere", "report", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--log-dir" in proc.stderr and "no log directory" in proc.stderr
    assert list(tmp_path.iterdir()) == []
