"""``analysis/analyzer``: ExperimentAnalyzer loads a directory of runs (in worker processes,
surviving one that dies), compares them, picks the best, exports CSV and DataFrames."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import GUIDE_COLUMNS, requires, run_simulated, run_sweep, same_rows, started_tracker

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


def test_load_all_parses_in_parallel_and_loads_the_same_runs(tmp_path):
    run_sweep(tmp_path, 6)
    for cache in tmp_path.glob(".*.columns"):
        cache.unlink()
    parallel = ExperimentAnalyzer(tmp_path)
    parallel.load_all(quiet=True, workers=2)
    assert len(list(tmp_path.glob(".*.columns"))) == 6  # the workers left caches
    for cache in tmp_path.glob(".*.columns"):
        cache.unlink()
    serial = ExperimentAnalyzer(tmp_path)
    serial.load_all(quiet=True, workers=1)
    assert list(parallel.logs) == list(serial.logs)
    for key in serial.logs:
        assert same_rows(
            list(parallel.logs[key].metrics_history), list(serial.logs[key].metrics_history)
        )
        assert parallel.logs[key].best_val_loss == serial.logs[key].best_val_loss


LOAD_ALL_IN_A_PROCESS = r"""
import json, os, sys
from pathlib import Path
import cs336_basics.analysis.analyzer as analysis
from cs336_basics import ExperimentAnalyzer
folder, kill = Path(sys.argv[1]), sys.argv[2] == "kill"
parent, real = os.getpid(), analysis._warm_cache
def warm(path):
    if kill and "lr3_" in path.name:
        os.kill(os.getpid(), 9)  # what the OOM killer does to a worker
    (folder.parent / f"worker-{os.getpid()}").touch()
    return real(path)
analysis._warm_cache = warm
analyzer = ExperimentAnalyzer(folder)
analyzer.load_all(quiet=True, workers=2)
print(json.dumps({"runs": len(analyzer.logs), "parent": parent}))
"""


@pytest.mark.parametrize("kill", [False, True])
def test_load_all_parses_in_worker_processes_and_survives_one_dying(tmp_path, kill):
    import json

    folder = tmp_path / "runs"
    run_sweep(folder, 6)
    for cache in folder.glob(".*.columns"):
        cache.unlink()
    out = subprocess.run(
        [sys.executable, "-c", LOAD_ALL_IN_A_PROCESS, str(folder), "kill" if kill else "ok"],
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(out.stdout.splitlines()[-1])
    assert answer["runs"] == 6
    workers = {int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")}
    assert workers and answer["parent"] not in workers  # parsed in other processes
    if kill:
        assert "parsing them here" in out.stderr


@requires("pandas")
def test_analyzer_to_pandas_is_one_long_frame(tmp_path):
    run_sweep(tmp_path, 3)
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    frame = analyzer.to_pandas()
    assert len(frame) == 150
    columns = ["run", "run_id", "experiment_name", "config.max_learning_rate"]
    assert list(frame.columns[:4]) == columns
    assert sorted(frame["run"].unique()) == ["lr0", "lr1", "lr2"]
    best = frame.groupby("config.max_learning_rate")["val_loss"].min()
    assert best.to_dict() == {0.01: 4.0, 0.1: 3.0, 1.0: 2.0}
    assert list(analyzer.to_pandas(["lr1"], config=False).columns[:3]) == [
        "run",
        "run_id",
        "experiment_name",
    ]
    with pytest.raises(TypeError, match="config"):
        analyzer.to_pandas(config="lr")


@requires("pandas")
def test_analyzer_to_pandas_refuses_a_metric_named_like_a_run_column(tmp_path):
    tracker = started_tracker(tmp_path, "clash")
    tracker.log_metrics(iteration=0, train_loss=1.0, run_id=3.0)
    tracker.finish()
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    with pytest.raises(ValueError, match="metric named 'run_id'"):
        analyzer.to_pandas()
