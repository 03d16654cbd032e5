import csv
import json
import math
from pathlib import Path

import pytest
from helpers import GUIDE_COLUMNS, run_simulated

from cs336_basics.experiment_analysis import ExperimentAnalyzer, print_experiment_summary


def test_compare_best_and_export(tmp_path, capsys):
    for lr in (1e-4, 1e-3, 3e-3):
        run_simulated(tmp_path, f"lr_{lr:.0e}", lr=lr, iters=60)
    run_simulated(tmp_path, "diverged", lr=1e-2, iters=60, diverge_at=30)
    analyzer = ExperimentAnalyzer(log_dir=tmp_path)
    analyzer.load_all()
    assert set(analyzer.logs) == {"lr_1e-04", "lr_1e-03", "lr_3e-03", "diverged"}
    table = analyzer.get_comparison_table()
    assert "max_learning_rate" in table and "d_model" not in table  # only differing config
    assert "diverged" in table
    best, value = analyzer.get_best_experiment("val_loss")
    assert best == "lr_3e-03"
    assert value == pytest.approx(
        min(
            analyzer.logs["lr_3e-03"].column("val_loss") or [0],
            key=lambda v: v if v is not None else math.inf,
        )
    )
    out = analyzer.export_csv("lr_1e-03", tmp_path / "out" / "lr.csv")
    with open(out) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == GUIDE_COLUMNS
    assert len(rows) == 61
    assert float(rows[1][3]) == analyzer.logs["lr_1e-03"].metrics_history[0].train_loss
    analyzer.print_summary("lr_1e-03")
    assert "lr_1e-03" in capsys.readouterr().out


def test_diverged_run_is_never_best(tmp_path):
    run_simulated(tmp_path, "fine", iters=30, lr=1e-3)
    nan_late = run_simulated(tmp_path, "nan_late", iters=30, diverge_at=25, lr=5e-2)
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all()
    # The diverged run reached a lower loss before it blew up ...
    assert nan_late.log.best_val_loss < analyzer.logs["fine"].best_val_loss
    # ... and is still not the best.
    assert analyzer.get_best_experiment("val_loss")[0] == "fine"
    assert analyzer.logs["nan_late"].diverged_at == 25


def test_bad_files_are_reported_and_skipped(tmp_path, capsys):
    run_simulated(tmp_path, "good", iters=5)
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text(json.dumps({"hello": "world"}))
    (tmp_path / "truncated.json").write_text('{"config": {"experiment_name": "t"}, "metrics_hi')
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    analyzer = ExperimentAnalyzer(tmp_path)
    logs = analyzer.load_all()
    assert list(logs) == ["good"]
    err = capsys.readouterr().err
    for name in ("garbage.json", "foreign.json", "truncated.json", "list.json"):
        assert name in err
    assert "not valid JSON" in err and "missing" in err


def test_runs_sharing_a_name_are_all_listed(tmp_path):
    first = run_simulated(tmp_path, "same", iters=5)
    second = run_simulated(tmp_path, "same", iters=8)
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all()
    assert len(analyzer.logs) == 2
    assert analyzer.get("same").run_id == second.run_id  # the name picks the latest
    assert analyzer.get(first.run_id).run_id == first.run_id
    assert first.run_id in analyzer.logs


def test_guide_batch_processing_loop(tmp_path, monkeypatch):
    run_simulated(tmp_path, "a", iters=5)
    run_simulated(tmp_path, "b", iters=5)
    monkeypatch.chdir(tmp_path)
    analyzer = ExperimentAnalyzer(log_dir=tmp_path)
    analyzer.load_all()
    for exp_name in analyzer.logs:
        analyzer.print_summary(exp_name)
        analyzer.export_csv(exp_name, Path(f"results/{exp_name}.csv"))
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["a.csv", "b.csv"]


def test_print_experiment_summary(tmp_path, capsys):
    run_simulated(tmp_path, "only", iters=20)
    print_experiment_summary(tmp_path)
    out = capsys.readouterr().out
    assert "only" in out and "Best by val_loss: only" in out


def test_unknown_metric_and_unknown_name(tmp_path):
    run_simulated(tmp_path, "x", iters=3)
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all()
    with pytest.raises(ValueError, match="metric.*perplexity"):
        analyzer.get_best_experiment("perplexity")
    with pytest.raises(KeyError, match="nope"):
        analyzer.export_csv("nope", tmp_path / "n.csv")
