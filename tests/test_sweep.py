"""Sweeps: trials as tracked runs on Optuna (the helper in this process, the example as two
real worker processes sharing one storage), pruned trials marked, the sweep table and the
figure from cs336-exp, and the search space W&B agents get (examples/sweep.yaml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import need, requires

from cs336_basics import ExperimentAnalyzer, ExperimentConfig, ExperimentTracker
from cs336_basics.cli import main as cli
from cs336_basics.store.layout import run_files, study_storage

optuna = need("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)

from cs336_basics.sweep import TrialReporter, open_study, run_trial, storage_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "examples" / "sweep.py"


def simulated_train(log_dir: Path, values: list[float], report: TrialReporter) -> None:
    """A training function as a user writes one: evals every 10 iterations."""
    config = ExperimentConfig(experiment_name=f"t{report.trial.number}", **report.config)
    tracker = ExperimentTracker(config, log_dir=log_dir)
    report.attach(tracker)
    tracker.start()
    for k, value in enumerate(values):
        it = 10 * k + 9
        tracker.log_metrics(iteration=it, train_loss=value)
        tracker.log_eval(iteration=it, val_loss=value)
        if report(it, value):
            break
    tracker.finish()


def test_run_trial_reports_prunes_and_marks_the_run(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=3.0))
    curves = {0: [2.9, 2.5, 2.0], 1: [3.5, 3.0, 2.8], 2: [2.0, float("nan"), 1.0]}
    study.optimize(
        lambda trial: run_trial(
            trial, lambda report: simulated_train(tmp_path, curves[trial.number], report)
        ),
        n_trials=3,
    )
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] + [optuna.trial.TrialState.PRUNED] * 2
    assert study.trials[0].value == 2.0  # the objective: the best value reported
    assert study.trials[0].intermediate_values == {9: 2.9, 19: 2.5, 29: 2.0}
    found = ExperimentAnalyzer(tmp_path)
    found.load_all(quiet=True)
    runs = {log.config.optuna_trial: log for log in found.logs.values()}
    assert sorted(runs) == [0, 1, 2]
    for number, log in runs.items():
        assert log.status == "finished"  # the document's status: never "crashed"
        assert log.group == study.study_name and log.config.optuna_study == study.study_name
        assert study.trials[number].user_attrs["run_id"] == log.run_id
    assert runs[0].results().status == "finished" and not runs[0].pruned
    pruned = runs[1]
    assert pruned.results().status == "pruned" and pruned.display_status == "pruned"
    assert pruned.summary == {"pruned": True, "pruned_at_iteration": 9}
    assert pruned.tags == ["pruned"] and "at iteration 9: ThresholdPruner" in pruned.notes
    assert pruned.last_iteration == 9  # stopped at the eval that pruned it
    # A NaN loss stops the trial too; the run shows as diverged (divergence wins).
    assert runs[2].pruned and runs[2].results().status == "diverged"
    headers, rows = found.sweep_rows(study.study_name)
    assert headers[:2] == ["trial", "run"] and headers[-3:] == ["best_val_loss", "status", "iters"]
    assert [(r[0], r[-2]) for r in rows] == [(0, "finished"), (1, "pruned"), (2, "diverged")]


def test_run_trial_needs_a_reported_value(tmp_path):
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(ValueError, match="reported no val_loss"):
        run_trial(trial, lambda report: None)


def test_default_storage_is_a_file_in_the_log_dir_that_is_no_run(tmp_path):
    study = open_study("lr sweep/1", log_dir=tmp_path)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    path = study_storage(tmp_path, "lr sweep/1")
    assert path.parent == tmp_path and path.name == "lr_sweep_1.optuna.log" and path.exists()
    assert run_files(tmp_path) == []  # never listed as a run
    again = open_study("lr sweep/1", log_dir=tmp_path)  # a second worker joins the study
    assert len(again.trials) == 2
    assert storage_for("sqlite:///x.db", tmp_path, "s") == "sqlite:///x.db"  # an RDB URL
    with pytest.raises(ValueError, match="is a folder"):
        storage_for(str(tmp_path), tmp_path, "s")


@requires("yaml", "torch", "numpy")  # examples/sweep.py trains with the training example
def test_the_sweep_script_explains_itself():
    result = subprocess.run(
        [sys.executable, str(SWEEP), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--study" in result.stdout and "tinylm_sweep)" in result.stdout  # its default


def test_sweep_yaml_declares_the_same_search_space_and_the_mirrors_val_key():
    import yaml

    from cs336_basics.wandb_adapter.keys import FIELD_TO_KEY

    sys.path.insert(0, str(REPO / "examples"))
    import sweep as example

    spec = yaml.safe_load((REPO / "examples" / "sweep.yaml").read_text())
    assert spec["parameters"] == example.wandb_parameters()
    assert spec["metric"] == {"name": FIELD_TO_KEY["val_loss"], "goal": "minimize"}
    assert spec["program"] == "examples/training_together.py" and "${args}" in spec["command"]


# --------------------------------------------------------------------------- two workers

TINY = [
    "--d-model=16",
    "--num-layers=1",
    "--num-heads=2",
    "--d-ff=32",
    "--context-length=16",
    "--eval-iters=2",
    "--log-interval=5",
    "--max-iters=30",
    "--eval-interval=10",
]
GOOD = {"lr": 1e-2, "warmup_iters": 3, "batch_size": 8, "weight_decay": 0.1}
BAD = {"lr": 1e-4, "warmup_iters": 100, "batch_size": 8, "weight_decay": 0.1}


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
    """Two examples/sweep.py processes on one journal file: 10 trials, none run twice; the
    two good trials enqueued first complete, the six bad ones after them are pruned at their
    first eval (worse than the median of the completed trials), and every trial is one
    loadable run of the log directory, shown by `cs336-exp sweep` and `plot --vs`."""
    logs = tmp_path / "logs"
    study = open_study("lr_sweep", log_dir=logs)
    for params in [GOOD, GOOD] + [BAD] * 6:
        study.enqueue_trial(params)
    command = [
        sys.executable,
        str(SWEEP),
        "--study=lr_sweep",
        "--trials=10",
        "--startup-trials=1",
        *TINY,
        f"--log-dir={logs}",
        f"--data-dir={tmp_path / 'data'}",
        f"--checkpoint-dir={tmp_path / 'ckpt'}",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.monotonic()
    workers = [
        subprocess.Popen(
            [*command, f"--sampler-seed={seed}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for seed in (1, 2)
    ]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    for worker, out in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, out
        assert out.count("\nrun experiment_lr_sweep_trial") >= 1, out  # each did trials
    elapsed = time.monotonic() - start

    trials = open_study("lr_sweep", log_dir=logs).trials
    states = optuna.trial.TrialState
    assert len(trials) >= 10 and all(t.state in (states.COMPLETE, states.PRUNED) for t in trials)
    assert [t.state for t in trials[:2]] == [states.COMPLETE] * 2
    assert [t.state for t in trials[2:8]] == [states.PRUNED] * 6

    found = ExperimentAnalyzer(logs)
    found.load_all(quiet=True)
    assert found.problems == []
    runs = {}
    for log in found.logs.values():
        number = log.config.optuna_trial
        assert number not in runs, f"trial {number} ran twice"
        runs[number] = log
    assert sorted(runs) == [t.number for t in trials]  # one run per trial, no other
    for trial in trials:
        log = runs[trial.number]
        assert log.group == "lr_sweep" and trial.user_attrs["run_id"] == log.run_id
        assert log.config.max_learning_rate == trial.params["lr"]
        assert log.status == "finished"
        expected = "pruned" if trial.state == states.PRUNED else "finished"
        assert log.results().status == expected and log.pruned == (expected == "pruned")
        if expected == "finished":
            assert log.best_val_loss == pytest.approx(trial.value)
    assert all(runs[n].last_iteration == 9 for n in range(2, 8))  # pruned at the first eval

    out = tmp_path / "out.json"
    with open(out, "w") as handle:
        proc = subprocess.run(
            [sys.executable, "-m", "cs336_basics", "sweep", "lr_sweep", "--log-dir", str(logs),
             "--json"], stdout=handle, text=True, timeout=60, check=True,
        )  # fmt: skip
    assert proc.returncode == 0
    table = json.loads(out.read_text())
    assert len(table) == len(trials)
    values = [row["best_val_loss"] for row in table]
    assert values == sorted(values) and table[0]["status"] == "finished"
    assert {row["status"] for row in table[-6:]} == {"pruned"}
    assert {"max_learning_rate", "warmup_iters"} <= set(table[0])
    figure = tmp_path / "lr.png"
    plot = ["plot", "--log-dir", str(logs), "--group", "lr_sweep", "--vs", "max_learning_rate"]
    assert cli([*plot, "--metric", "best_val_loss", "-o", str(figure)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"two workers, {len(trials)} trials: {elapsed:.1f} s")


def test_sweep_table_and_plot_vs_on_simulated_trials(tmp_path, capsys):
    """`cs336-exp sweep` (text) and `plot --vs` (log x for learning rates, pruned hollow)."""
    plots = need("matplotlib")
    del plots
    from cs336_basics import plot_vs

    study = optuna.create_study(study_name="s", pruner=optuna.pruners.ThresholdPruner(upper=3))
    lrs = {0: 1e-4, 1: 1e-3, 2: 1e-2}
    curves = {0: [3.5], 1: [2.5, 2.2], 2: [2.9, 2.0]}

    def train(report: TrialReporter) -> None:
        number = report.trial.number
        config = ExperimentConfig(
            experiment_name=f"s{number}", max_learning_rate=lrs[number], **report.config
        )
        tracker = ExperimentTracker(config, log_dir=tmp_path)
        report.attach(tracker)
        for k, value in enumerate(curves[number]):
            tracker.log_eval(iteration=k, val_loss=value)
            if report(k, value):
                break
        tracker.finish()

    study.optimize(lambda trial: run_trial(trial, train), n_trials=3)
    assert cli(["sweep", "s", "--log-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split() == ["trial", "run", "max_learning_rate", "best_val_loss", "status",
                                "iters"]  # fmt: skip
    assert [line.split()[0] for line in lines[2:5]] == ["2", "1", "0"]  # best first
    assert lines[4].split()[-2] == "pruned"
    assert lines[5] == (
        "3 trials (2 finished, 1 pruned); best: trial 2 (best_val_loss 2.000000, run s2)"
    )
    assert cli(["sweep", "nope", "--log-dir", str(tmp_path)]) == 2
    assert "no run in group 'nope'; groups: s" in capsys.readouterr().err

    found = ExperimentAnalyzer(tmp_path)
    found.load_all(quiet=True)
    fig = plot_vs(found.in_group("s"), "max_learning_rate", "val_loss")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "best val loss" in ax.get_ylabel()
    drawn = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert drawn == {"finished (2)": [[1e-3, 2.2], [1e-2, 2.0]], "pruned (1)": [[1e-4, 3.5]]}
    assert cli(["plot", "--log-dir", str(tmp_path), "--group", "s", "--vs", "nope", "-o",
                str(tmp_path / "x.png")]) == 2  # fmt: skip
    assert "--vs nope: no run has a number under that config key" in capsys.readouterr().err
