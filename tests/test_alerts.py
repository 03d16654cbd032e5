"""Alerts: NaN/inf losses, loss spikes and gradient-norm explosions, detected as rows are
written (core.alerts, runtime.alerts), stored in the run, counted, shown, and never a false
alarm on real or noisy training curves."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import expect_log, need, requires, simulate_death

from cs336_basics import (
    ExperimentConfig,
    ExperimentTracker,
    InMemorySink,
    load_experiment_log,
)
from cs336_basics.core.alerts import Alert, AlertDetector, AlertRules
from cs336_basics.core.text import format_summary

if TYPE_CHECKING:
    import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "training_together.py"


def feed(detector: AlertDetector, rows: list[dict[str, float]]) -> list[Alert]:
    found: list[Alert] = []
    for i, values in enumerate(rows):
        found += detector.observe(i, i + 1, float(i), values)
    return found


def noisy_loss(n: int, seed: int = 0, scale: float = 0.15) -> np.ndarray:
    """A loss falling from 5 to 2 with heavy-tailed noise (Student t, 3 degrees of freedom)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 2 + 3 * np.exp(-t / 300) + scale * rng.standard_t(3, n)


def noisy_grad_norm(n: int, seed: int = 0, spikes: float = 0.01) -> np.ndarray:
    """Log-normal gradient norms, falling, with isolated 3-10x spikes on 1% of rows."""
    import numpy as np

    rng = np.random.default_rng(seed + 1000)
    t = np.arange(n)
    norms = np.exp(rng.normal(0, 0.35, n)) * (0.5 + 2 * np.exp(-t / 100))
    hit = rng.random(n) < spikes
    norms[hit] *= rng.uniform(3, 10, hit.sum())
    return norms


# ---------------------------------------------------------------------------------------
# The rules.


def test_nan_and_inf_losses_are_reported_at_once_and_once_per_streak() -> None:
    rows = [{"train_loss": 3.0 - 0.01 * i} for i in range(10)]
    rows[4] = {"train_loss": math.nan}
    rows[5] = {"train_loss": math.inf}  # the same streak
    rows[8] = {"train_loss": -math.inf}  # a new one
    found = feed(AlertDetector(), rows)
    assert [(a.kind, a.metric, a.iteration, a.detected_at) for a in found] == [
        ("nan", "train_loss", 4, 4),
        ("nan", "train_loss", 8, 8),
    ]
    assert math.isnan(found[0].value) and found[1].value == -math.inf
    assert found[0].level == "ERROR" and "train_loss is NaN at iteration 4" in found[0].text
    val = AlertDetector().observe(50, 51, 1.0, {"val_loss": math.nan})
    assert [(a.kind, a.metric) for a in val] == [("nan", "val_loss")]


@requires("numpy")
@pytest.mark.parametrize("seed", range(3))
def test_a_spike_is_reported_within_its_persistence_window(seed: int) -> None:
    loss = noisy_loss(800, seed)
    loss[500:506] += 3.0  # a jump that lasts 6 rows
    found = feed(AlertDetector(), [{"train_loss": float(v)} for v in loss])
    assert len(found) == 1
    alert = found[0]
    assert (alert.kind, alert.metric, alert.iteration) == ("spike", "train_loss", 500)
    assert alert.detected_at == 500 + AlertRules().persist - 1  # the third high row
    assert alert.value == pytest.approx(loss[500])
    assert alert.baseline == pytest.approx(2.0 + 3 * math.exp(-500 / 300), abs=0.3)
    assert alert.deviation is not None and alert.deviation > 0
    assert alert.level == "WARN" and "against a baseline of" in alert.text


@requires("numpy")
def test_a_spike_shorter_than_the_window_is_not_an_event() -> None:
    loss = noisy_loss(600)
    loss[400:402] += 5.0  # two rows: shorter than persist (3)
    assert feed(AlertDetector(), [{"train_loss": float(v)} for v in loss]) == []


@requires("numpy")
def test_gradient_norm_explosion_and_a_configurable_metric() -> None:
    norms = noisy_grad_norm(600)
    norms[450:] *= 40  # exploding from row 450 on
    found = feed(AlertDetector(), [{"grad_norm": float(v)} for v in norms])
    assert [(a.kind, a.metric, a.iteration, a.detected_at) for a in found] == [
        ("explosion", "grad_norm", 450, 452)
    ]
    rules = AlertRules(explosion_metrics=("gnorm",))
    found = feed(AlertDetector(rules), [{"gnorm": float(v)} for v in norms])
    assert [(a.metric, a.iteration) for a in found] == [("gnorm", 450)]


@requires("numpy")
def test_nonfinite_grad_norms_need_persistence() -> None:
    norms = [float(v) for v in noisy_grad_norm(300)]
    norms[100] = math.inf  # a GradScaler's skipped step: one row
    assert feed(AlertDetector(), [{"grad_norm": v} for v in norms]) == []
    norms[200:204] = [math.nan] * 4
    found = feed(AlertDetector(), [{"grad_norm": v} for v in norms])
    assert [(a.kind, a.iteration, a.detected_at) for a in found] == [("explosion", 200, 202)]


@requires("numpy")
def test_a_new_level_is_reported_once_then_learned() -> None:
    loss = noisy_loss(1000, scale=0.05)
    loss[300:] += 2.0  # the loss jumps up and stays there
    found = feed(AlertDetector(), [{"train_loss": float(v)} for v in loss])
    assert [(a.kind, a.iteration) for a in found] == [("spike", 300)]


def test_quiet_priming_reports_nothing() -> None:
    detector = AlertDetector()
    for i in range(30):
        assert detector.observe(i, i + 1, 0.0, {"train_loss": math.nan}, quiet=True) == []
    assert detector.observe(30, 31, 0.0, {"train_loss": math.nan}) == []  # same streak


@requires("numpy")
def test_no_false_alarm_on_noisy_simulated_curves() -> None:
    for seed in range(10):
        loss, norms = noisy_loss(3000, seed), noisy_grad_norm(3000, seed)
        rows = [
            {"train_loss": float(a), "grad_norm": float(b)}
            for a, b in zip(loss, norms, strict=True)
        ]
        assert feed(AlertDetector(), rows) == [], seed


def test_alert_round_trips_its_dict() -> None:
    alert = Alert(3, 4, 1.5, "spike", "train_loss", 9.0, 2.0, 0.1, 5)
    assert Alert.from_dict(alert.to_dict()) == alert
    with pytest.raises(ValueError, match="alert.iteration"):
        Alert.from_dict({**alert.to_dict(), "iteration": "3"})


# ---------------------------------------------------------------------------------------
# In a tracker.


def spiky_run(tracker: ExperimentTracker, n: int = 120) -> None:
    """A run with a loss spike at 60-64, a NaN at 100 and a grad-norm explosion from 80."""
    for i in range(n):
        loss = 3.0 - 0.005 * i + 0.01 * math.sin(i)
        if 60 <= i < 65:
            loss += 4.0
        if i >= 100:
            loss = math.nan
        norm = 1.0 + 0.05 * math.cos(i) + (30.0 if i >= 80 else 0.0)
        tracker.log_metrics(iteration=i, train_loss=loss, grad_norm=norm)
        tracker.increment_gradient_step()


def test_tracker_records_counts_and_shows_alerts(tmp_path: Path) -> None:
    seen: list[tuple[Alert, str]] = []
    sink = InMemorySink()

    def on_alert(alert: Alert) -> None:
        seen.append((alert, threading.current_thread().name))
        raise RuntimeError("the callback's own bug")  # logged, never raised

    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="alerts"),
        log_dir=tmp_path,
        sinks=[sink],
        on_alert=on_alert,
        system_interval=0,
    )
    spiky_run(tracker)
    tracker.flush()
    expected = [("spike", 60, 62), ("explosion", 80, 82), ("nan", 100, 100)]
    assert [(a.kind, a.iteration, a.detected_at) for a in tracker.alerts] == expected
    assert tracker.health()["alerts"] == 3
    tracker.finish()
    assert [(a.kind, a.iteration) for a, _ in seen] == [(k, i) for k, i, _ in expected]
    assert {name for _, name in seen} == {"cs336-alerts"}  # never the training thread
    assert [a.kind for a in sink.alerts] == ["spike", "explosion", "nan"]
    log = load_experiment_log(tracker.path)
    assert repr(log.alerts) == repr(tracker.alerts)  # (NaN != NaN: compared as text)
    assert log.results().alerts == 3
    document = json.loads(tracker.path.read_text())
    assert [a["kind"] for a in document["alerts"]] == ["spike", "explosion", "nan"]
    assert document["alerts"][2]["value"] == "NaN"  # strict JSON
    summary = format_summary(log)
    assert "ALERTS:           3" in summary and "train_loss rose to" in summary


def test_callback_failure_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def on_alert(alert: Alert) -> None:
        raise RuntimeError("boom")

    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="cb"),
        log_dir=tmp_path,
        on_alert=on_alert,
        system_interval=0,
    )
    with expect_log(caplog, "on_alert raised", level=40):
        tracker.log_metrics(iteration=0, train_loss=math.nan)
        tracker.finish()


def test_alerts_survive_a_crash_and_a_resume_does_not_repeat_them(tmp_path: Path) -> None:
    config = ExperimentConfig(experiment_name="crash")
    tracker = ExperimentTracker(config, log_dir=tmp_path, system_interval=0)
    spiky_run(tracker, 105)
    tracker.save(wait=True)  # a document holding some alerts, a journal the rest
    tracker.log_metrics(iteration=105, train_loss=math.nan)
    tracker.flush()
    simulate_death(tracker)
    recovered = load_experiment_log(tracker.path)
    assert [a.kind for a in recovered.alerts] == ["spike", "explosion", "nan"]
    assert recovered.results().alerts == 3

    resumed = ExperimentTracker(config, log_dir=tmp_path, resume=tracker.path, system_interval=0)
    resumed.start()
    for i in range(106, 110):  # still NaN: the same streak (the detector was primed)
        resumed.log_metrics(iteration=i, train_loss=math.nan)
    resumed.finish()
    assert [a.kind for a in load_experiment_log(tracker.path).alerts] == [
        "spike",
        "explosion",
        "nan",
    ]


def test_a_nan_alert_only_in_the_journal_is_replayed(tmp_path: Path) -> None:
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="journal"), log_dir=tmp_path, system_interval=0
    )
    tracker.log_metrics(iteration=0, train_loss=2.0)
    tracker.log_metrics(iteration=1, train_loss=math.inf)
    tracker.log_eval(iteration=1, val_loss=math.nan)
    tracker.flush()
    simulate_death(tracker)
    lines = [json.loads(line) for line in tracker.files.journal.read_text().splitlines()]
    assert [r["alert"]["value"] for r in lines if r["k"] == "w"] == ["Infinity", "NaN"]
    recovered = load_experiment_log(tracker.files.journal)
    assert [(a.metric, a.value) for a in recovered.alerts][0] == ("train_loss", math.inf)
    assert recovered.alerts[1].metric == "val_loss" and math.isnan(recovered.alerts[1].value)


def test_alerts_off_and_custom_rules(tmp_path: Path) -> None:
    off = ExperimentTracker(
        ExperimentConfig(experiment_name="off"),
        log_dir=tmp_path,
        alert_rules=False,
        system_interval=0,
    )
    spiky_run(off)
    off.finish()
    assert off.alerts == [] and off.log.alerts == []
    nan_only = ExperimentTracker(
        ExperimentConfig(experiment_name="nan_only"),
        log_dir=tmp_path,
        alert_rules=AlertRules(spike_metrics=(), explosion_metrics=()),
        system_interval=0,
    )
    spiky_run(nan_only)
    nan_only.finish()
    assert [a.kind for a in nan_only.alerts] == ["nan"]
    with pytest.raises(TypeError, match="alert_rules"):
        ExperimentTracker(ExperimentConfig(), log_dir=tmp_path, alert_rules="strict")


def test_saves_racing_the_journal_thread_lose_and_repeat_nothing(tmp_path: Path) -> None:
    # Saves between rows: alerts found while a save rotates the journal are in the document
    # or the next journal (or both: replayed once).
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="race"), log_dir=tmp_path, system_interval=0
    )
    for i in range(400):
        loss = 3.0 + 0.01 * math.sin(i) + (5.0 if i % 50 >= 40 and i % 50 < 45 else 0.0)
        tracker.log_metrics(iteration=i, train_loss=loss)
        if i % 7 == 0:
            tracker.save()
    tracker.flush()
    simulate_death(tracker)
    recovered = load_experiment_log(tracker.path)
    assert [a.iteration for a in recovered.alerts] == [40, 90, 140, 190, 240, 290, 340, 390]
    assert recovered.alerts == tracker.log.alerts


# ---------------------------------------------------------------------------------------
# Real training curves: the example at three learning rates, small and noisy (batch 8).

TINY = [
    "--max-iters", "150", "--log-interval", "1", "--eval-interval", "50", "--eval-iters", "2",
    "--d-model", "32", "--num-layers", "1", "--num-heads", "2", "--d-ff", "64",
    "--context-length", "32", "--batch-size", "8", "--warmup-iters", "10",
    "--no-plot", "--quiet",
]  # fmt: skip


@pytest.mark.slow
@requires("torch", "numpy")  # the example trains a real model
def test_no_false_alarm_on_the_example_at_three_learning_rates(tmp_path: Path) -> None:
    env = dict(os.environ, CS336_SYSTEM_INTERVAL="0")
    for lr in ("1e-3", "3e-3", "1e-2"):
        subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--lr",
                lr,
                "--wandb-run-name",
                f"lr_{lr}",
                "--log-dir",
                str(tmp_path / "logs"),
                "--checkpoint-dir",
                str(tmp_path / "ckpt"),
                "--data-dir",
                str(tmp_path / "data"),
                *TINY,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    runs = sorted((tmp_path / "logs").glob("experiment_lr_*.json"))
    assert len(runs) == 3
    for path in runs:
        log = load_experiment_log(path)
        assert len(log.metrics_history) == 150 and log.finished
        assert log.column("grad_norm")[0] is not None  # the explosion rule had its metric
        assert log.alerts == [], (path.name, log.alerts)
        assert log.results().alerts == 0


def test_time_to_alert_is_short(tmp_path: Path) -> None:
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="latency"), log_dir=tmp_path, system_interval=0
    )
    tracker.log_metrics(iteration=0, train_loss=math.nan)
    deadline = time.monotonic() + 5
    while not tracker.alerts and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tracker.alerts, "the journal thread judges rows within its flush interval"
    tracker.finish()


@pytest.mark.slow
@requires("wandb")
def test_alerts_reach_the_wandb_mirror(tmp_path: Path) -> None:
    import wandb_records as wr

    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="wandb_alerts"),
        log_dir=tmp_path,
        sinks=["wandb"],
        system_interval=0,
    )
    spiky_run(tracker)
    tracker.finish()
    state = load_experiment_log(tracker.path).mirrors["wandb"]
    assert state["status"] == "finished" and state["alerts_sent"] == 3
    sent = wr.alerts(state["sync_dir"])  # an offline run keeps them in its file
    assert [(a["title"], a["level"]) for a in sent] == [
        ("train_loss spike", "WARN"),
        ("grad_norm explosion", "WARN"),
        ("train_loss non-finite", "ERROR"),
    ]
    assert sent[2]["text"] == "train_loss is NaN at iteration 100 (gradient step 101)"


def test_alert_positions_and_plot_markers(tmp_path: Path) -> None:
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="marks", batch_size=2, context_length=5),
        log_dir=tmp_path,
        system_interval=0,
        flops_per_token=100.0,
    )
    spiky_run(tracker)
    tracker.finish()
    log = tracker.log
    assert [x for x, _ in log.alert_positions("iteration")] == [60.0, 80.0, 100.0]
    assert [x for x, _ in log.alert_positions("gradient_step")] == [61.0, 81.0, 101.0]
    assert [x for x, _ in log.alert_positions("tokens")] == [610.0, 810.0, 1010.0]
    assert [x for x, _ in log.alert_positions("flops")] == [61000.0, 81000.0, 101000.0]
    wall = [x for x, _ in log.alert_positions("wallclock")]
    assert wall == [a.wallclock_time for a in log.alerts]
    log.compute = {}
    assert log.alert_positions("flops") == []
    need("matplotlib")
    from cs336_basics.analysis.plots import close, plot_runs

    fig = plot_runs([log], x="iteration", alerts=True, out=tmp_path / "marks.png")
    vertical = [line for line in fig.axes[0].lines if line.get_linestyle() == ":"]
    assert sorted(line.get_xdata()[0] for line in vertical) == [60.0, 80.0, 100.0]
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "spike: train_loss" in texts and "explosion: grad_norm" in texts
    close(fig)


@pytest.mark.parametrize("seed", range(40))
def test_the_fast_path_gives_what_the_rule_gives(seed: int) -> None:
    """``observe`` judges the common row (finite, not high, after warm-up) inline; a detector
    whose fast path is off (every metric planned as kind None: the rule's own branches
    decide) gives the same alerts and ends in the same state, spikes, NaN and new levels
    included."""
    import random

    rng = random.Random(seed)
    fast, slow = AlertDetector(), AlertDetector()
    slow._plan = {m: (None, nan) for m, (_, nan) in slow._plan.items()}
    level = 3.0
    for i in range(400):
        x = level + rng.gauss(0, 0.1 * rng.random())
        r = rng.random()
        if r < 0.02:
            x += rng.choice([5.0, 50.0, -1.0])
        if r < 0.005:
            x = rng.choice([math.nan, math.inf])
        if rng.random() < 0.01:
            level *= rng.choice([2.0, 0.5])
        norm = abs(rng.gauss(1, 0.1)) * (30 if rng.random() < 0.03 else 1)
        values = {"train_loss": x, "grad_norm": norm if i % 3 else int(norm * 10)}
        if i % 10 == 0:
            values["val_loss"] = x if rng.random() < 0.9 else math.nan
        assert repr(fast.observe(i, i, 0.1 * i, dict(values))) == repr(
            slow.observe(i, i, 0.1 * i, dict(values))
        ), i
    assert repr(fast._baselines) == repr(slow._baselines)
