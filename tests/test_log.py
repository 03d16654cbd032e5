"""``core/log``: a run as a DataFrame, and as one short line (a dict of runs stays
readable)."""

from __future__ import annotations

import math
import sys

import pytest
from helpers import GUIDE_COLUMNS, finished_run, requires, run_simulated

from cs336_basics import ExperimentAnalyzer, ExperimentConfig
from cs336_basics.core.log import ExperimentLog
from cs336_basics.experiment_log import load_experiment_log


@requires("pandas")
def test_experiment_log_to_pandas(tmp_path):
    path = finished_run(tmp_path, rows=1200)
    frame = load_experiment_log(path).to_pandas()
    assert list(frame.columns)[:8] == GUIDE_COLUMNS
    assert "grad_norm" in frame.columns and len(frame) == 1200
    assert str(frame["iteration"].dtype) == "int64" and str(frame["val_loss"].dtype) == "float64"
    assert frame["val_loss"].notna().sum() == 2  # 0 and 500 (1000 is NaN: diverged)
    assert math.isnan(frame.loc[1000, "val_loss"])
    assert frame.loc[13, "grad_norm"] == 6.0 and frame.loc[13, "train_loss"] == 3.0 - 13e-4


def test_to_pandas_without_pandas_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"cs336-basics\[pandas\]"):
        ExperimentLog(config=ExperimentConfig()).to_pandas()


def test_a_run_prints_as_one_short_line(tmp_path):
    run_simulated(tmp_path, "lr_1e-3", iters=400)
    stopped = run_simulated(tmp_path, "stopped", iters=35, finish=False)
    stopped.close()
    run_simulated(tmp_path, "no_eval", iters=3, eval_every=100)
    analyzer = ExperimentAnalyzer(tmp_path)
    logs = analyzer.load_all(quiet=True)
    finished = logs["lr_1e-3"]
    best = finished.results().best_val_loss
    assert repr(finished) == (
        f"<ExperimentLog lr_1e-3 ({finished.run_id}), finished, 400 rows, best val {best:.4f}>"
    )
    so_far = logs["stopped"].results().best_val_loss
    assert repr(logs["stopped"]).endswith(f", unfinished, 35 rows, best val {so_far:.4f} so far>")
    assert repr(logs["no_eval"]).endswith(", finished, 3 rows, no val loss>")
    shown = repr(logs)
    assert len(shown) < 400 and "metrics_history" not in shown and "MetricsSnapshot" not in shown
