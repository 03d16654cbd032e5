"""Runs of one group (seeds) as one curve: ``analysis.groups.band`` (mean, min/max, std), and
``cs336-exp plot --by-group``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import need

from cs336_basics import ExperimentConfig, ExperimentTracker, plot_runs
from cs336_basics.analysis.groups import band, groups_of
from cs336_basics.cli import main
from cs336_basics.core.errors import UsageError


def test_band_of_seeds_logged_at_the_same_steps_is_exact() -> None:
    xs = [float(i) for i in range(1, 11)]
    runs = [[1.0 * i + k for i in range(10)] for k in (0.0, 1.0, 5.0)]
    found = band([(xs, ys) for ys in runs], bins=50)  # more bins than steps: one value a run
    assert found is not None and found.x == xs
    assert found.mean == pytest.approx([i + 2.0 for i in range(10)])
    assert found.low == [float(i) for i in range(10)]
    assert found.high == [i + 5.0 for i in range(10)]
    std = math.sqrt(((0 - 2) ** 2 + (1 - 2) ** 2 + (5 - 2) ** 2) / 3)
    assert found.std == pytest.approx([std] * 10) and found.n == [3] * 10
    low, high = found.edges("std")
    assert high[0] - low[0] == pytest.approx(2 * std)
    with pytest.raises(ValueError, match="band"):
        found.edges("iqr")


def test_band_with_a_run_that_stopped_early_and_fewer_bins() -> None:
    long = ([float(i) for i in range(100)], [1.0] * 100)
    short = ([float(i) for i in range(50)], [3.0] * 50)
    found = band([long, short], bins=10)
    assert found is not None and len(found.x) == 10
    assert found.n == [2] * 5 + [1] * 5  # the short run ends half-way
    assert found.mean == [2.0] * 5 + [1.0] * 5
    assert band([([], [])], bins=10) is None


def _runs(logs: Path) -> None:
    for name, group, offset in (("s0", "seeds", 0.0), ("s1", "seeds", 0.2), ("solo", None, 1)):
        tracker = ExperimentTracker(
            ExperimentConfig(experiment_name=name), log_dir=logs, group=group
        )
        for i in range(200):
            tracker.log_metrics(iteration=i, train_loss=3 - i / 100 + offset)
            tracker.increment_gradient_step()
        tracker.log_eval(iteration=199, val_loss=1.5 + offset)
        tracker.finish()


def test_plot_by_group_draws_the_mean_in_a_band(tmp_path: Path, capsys) -> None:
    need("matplotlib")
    from cs336_basics import ExperimentAnalyzer

    _runs(tmp_path)
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    assert groups_of(analyzer.logs) == {"seeds": ["s0", "s1"]}
    fig = plot_runs(analyzer.logs, metrics=("train_loss",), by_group=True)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    mean = lines["seeds train_loss (mean of 2, min-max)"]
    assert list(mean.get_ydata())[:2] == pytest.approx([3.1, 3.09])
    assert "solo train_loss" in lines and not any(k.startswith("s0") for k in lines)
    assert len(ax.collections) == 1  # the band
    fig = plot_runs(analyzer.logs, metrics=("train_loss",), by_group=True, band="std")
    assert any("±std" in line.get_label() for line in fig.axes[0].get_lines())
    with pytest.raises(UsageError, match="band"):
        plot_runs(analyzer.logs, by_group=True, band="iqr")
    out = tmp_path / "groups.png"
    d = ["--log-dir", str(tmp_path)]
    assert main(["plot", "*", "--by-group", "--band", "std", "-o", str(out), *d]) == 0
    assert out.stat().st_size > 10_000
    assert main(["plot", "*", "--group", "seeds", "-o", str(out), *d]) == 0
    assert "(2 run(s): s0, s1)" in capsys.readouterr().out
