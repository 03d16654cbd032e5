import math
import os
import sys
import threading
import time

import pytest
import wandb_records as wr
from helpers import expect_log, requires

from cs336_basics.core.errors import SinkUnavailableError
from cs336_basics.experiment_log import (
    ExperimentConfig,
    ExperimentTracker,
    InMemorySink,
    Sink,
    load_experiment_log,
)
from cs336_basics.wandb_adapter.keys import FIELD_TO_KEY
from cs336_basics.wandb_adapter.push import push_run
from cs336_basics.wandb_adapter.sink import WandbSink

pytestmark = pytest.mark.slow
needs_wandb = requires("wandb")


def same(a, b):
    a, b = float(a), float(b)
    return (math.isnan(a) and math.isnan(b)) or a == b


def train(tracker, start, stop, eval_every=5, nan_at=None):
    for i in range(start, stop):
        loss = float("nan") if i == nan_at else 5.0 / (1 + i)
        tracker.log_metrics(
            iteration=i,
            train_loss=loss,
            learning_rate=1e-3 * (i + 1),
            tokens_per_sec=1000.0 + i,
            iter_time_ms=2.5,
            grad_norm=0.5 + i,
        )
        tracker.increment_gradient_step()
        if (i + 1) % eval_every == 0:
            tracker.log_eval(iteration=i, val_loss=6.0 / (1 + i))


@needs_wandb
def test_wandb_run_matches_local_json_row_by_row(tmp_path):
    config = ExperimentConfig(experiment_name="mirror", ffn_type="silu", max_learning_rate=3e-3)
    tracker = ExperimentTracker(config, log_dir=tmp_path, sinks=["wandb"])
    train(tracker, 0, 20, nan_at=7)
    tracker.finish(notes="mirrored run")
    local = load_experiment_log(tracker.path)
    state = local.mirrors["wandb"]
    assert state["status"] == "finished" and state["rows"] == 20 and state["evals"] == 4
    rows = wr.history(state["sync_dir"])
    train_rows = [r for r in rows if "train/loss" in r]
    eval_rows = [r for r in rows if "val/loss" in r]
    assert len(train_rows) == 20 and len(eval_rows) == 4
    for got, row in zip(train_rows, local.metrics_history, strict=True):
        assert got["iteration"] == row.iteration and got["gradient_step"] == row.gradient_step
        assert same(got["wallclock_time"], row.wallclock_time)
        for field in ("train_loss", "learning_rate", "tokens_per_sec", "iter_time_ms"):
            assert same(got[FIELD_TO_KEY[field]], getattr(row, field)), field
        assert same(got["extra/grad_norm"], row.extra["grad_norm"])
    evals = [r for r in local.metrics_history if r.val_loss is not None]
    for got, row in zip(eval_rows, evals, strict=True):
        assert got["iteration"] == row.iteration and same(got["val/loss"], row.val_loss)
    run = wr.run_record(state["sync_dir"])
    assert run["display_name"] == "mirror" and run["notes"] == "mirrored run"
    config_seen = {k: v for k, v in run["config"]["update"].items() if k != "_wandb"}
    assert config_seen == {**config.settings(), "cs336_local_run": local.run_id}
    summary = wr.summary(state["sync_dir"])
    for name in (
        "best_train_loss",
        "best_val_loss",
        "final_train_loss",
        "final_val_loss",
        "duration_seconds",
    ):
        assert same(summary[name], getattr(local, name)), name
    metrics = [r["metric"] for r in wr.records(state["sync_dir"]) if r.get("type") == "metric"]
    assert {m.get("name") for m in metrics} >= {"iteration", "gradient_step", "wallclock_time"}
    assert {m.get("glob_name") for m in metrics} >= {"train/*", "val/*"}


@needs_wandb
def test_sink_from_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("CS336_SINKS", "wandb,memory")
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="env"), log_dir=tmp_path)
    assert [s.name for s in tracker.sinks] == ["wandb", "memory"]
    train(tracker, 0, 3)
    tracker.finish()
    assert tracker.sinks[1].rows and tracker.log.mirrors["wandb"]["status"] == "finished"


def test_missing_wandb_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(SinkUnavailableError, match=r"pip install 'cs336-basics\[wandb\]'"):
        ExperimentTracker(ExperimentConfig(), log_dir=tmp_path, sinks=["wandb"])


def test_unknown_sink_name(tmp_path):
    with pytest.raises(SinkUnavailableError, match="tensorboard"):
        ExperimentTracker(ExperimentConfig(), log_dir=tmp_path, sinks=["tensorboard"])


@needs_wandb
@pytest.mark.filterwarnings("error")
def test_init_failure_keeps_training_and_local_log(tmp_path, monkeypatch, caplog):
    import wandb

    def broken_init(**kwargs):
        raise wandb.errors.CommError("network is down")

    monkeypatch.setattr(wandb, "init", broken_init)
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="noinit"),
        log_dir=tmp_path,
        sinks=[WandbSink(mode="offline", in_process=True)],
    )
    with expect_log(caplog, "network is down.*push"):
        train(tracker, 0, 10)
        tracker.finish()
    local = load_experiment_log(tracker.path)
    assert len(local.metrics_history) == 10
    assert local.mirrors["wandb"]["status"] == "failed"
    assert "network is down" in local.mirrors["wandb"]["error"]


@needs_wandb
@pytest.mark.filterwarnings("error")
def test_online_init_failure_falls_back_to_offline(tmp_path, monkeypatch, caplog):
    import wandb

    real_init = wandb.init

    def init(**kwargs):
        if kwargs.get("mode") != "offline":
            raise wandb.errors.UsageError("api_key not configured (no-tty)")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="fallback"),
        log_dir=tmp_path,
        sinks=[WandbSink(mode="online", in_process=True)],
    )
    with expect_log(caplog, "mirroring offline"):
        train(tracker, 0, 6)
        tracker.finish()
    state = tracker.log.mirrors["wandb"]
    assert state["status"] == "finished" and state["mode"] == "offline"
    assert len([r for r in wr.history(state["sync_dir"]) if "train/loss" in r]) == 6


@needs_wandb
@pytest.mark.filterwarnings("error")
def test_log_failure_mid_run_is_contained(tmp_path, monkeypatch, caplog):
    from wandb.sdk.wandb_run import Run

    real_log = Run.log
    calls = {"n": 0}

    def flaky_log(self, data, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise ConnectionResetError("sidecar died")
        return real_log(self, data, *args, **kwargs)

    monkeypatch.setattr(Run, "log", flaky_log)
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="flaky"),
        log_dir=tmp_path,
        sinks=[WandbSink(in_process=True)],
    )
    with expect_log(caplog, "sidecar died"):
        train(tracker, 0, 30)
        tracker.finish()
    local = load_experiment_log(tracker.path)
    assert [r.iteration for r in local.metrics_history] == list(range(30))
    assert local.mirrors["wandb"]["status"] == "failed"
    assert calls["n"] == 4  # switched off after the first failure


class HangingSink(Sink):
    name = "hanging"

    def __init__(self):
        self.release = threading.Event()
        self.seen = 0

    def emit(self, row):
        self.seen += 1
        self.release.wait()


@pytest.mark.filterwarnings("error")
def test_hanging_sink_never_blocks_training(tmp_path, caplog):
    sink = HangingSink()
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="hang"), log_dir=tmp_path, sinks=[sink], sink_queue_size=50
    )
    start = time.perf_counter()
    with expect_log(caplog, "events behind"):
        train(tracker, 0, 500)
    assert time.perf_counter() - start < 2.0
    with expect_log(caplog, "did not finish within 0.5 s"):
        tracker.finish(sink_timeout=0.5)
    sink.release.set()
    local = load_experiment_log(tracker.path)
    assert len(local.metrics_history) == 500
    assert local.mirrors["hanging"]["status"] == "incomplete"


def test_in_memory_sink_and_flush(tmp_path):
    sink = InMemorySink()
    with ExperimentTracker(
        ExperimentConfig(experiment_name="mem"), log_dir=tmp_path, sinks=[sink]
    ) as tracker:
        train(tracker, 0, 12)
        tracker.flush()
        assert len(sink.rows) == 12 and len(sink.evals) == 2 and sink.flushes >= 1
    assert sink.finished and sink.closed
    assert sink.rows[3]["train_loss"] == tracker.log.metrics_history[3].train_loss


@needs_wandb
def test_resume_continues_the_same_wandb_run(tmp_path):
    config = ExperimentConfig(experiment_name="resume_wb")
    first = ExperimentTracker(config, log_dir=tmp_path, sinks=["wandb"])
    train(first, 0, 10)
    first.close()  # stopped, not finished (e.g. preempted after a checkpoint)
    state1 = load_experiment_log(first.path).mirrors["wandb"]
    second = ExperimentTracker(config, log_dir=tmp_path, sinks=["wandb"], resume=first.path)
    train(second, 10, 20)
    second.finish()
    state2 = second.log.mirrors["wandb"]
    assert state2["run_id"] == state1["run_id"]
    assert state2["sync_dir"] != state1["sync_dir"]  # wandb makes one offline dir per resume
    rows = wr.history(state1["sync_dir"]) + wr.history(state2["sync_dir"])
    train_iters = [r["iteration"] for r in rows if "train/loss" in r]
    assert train_iters == list(range(20))  # no duplicates, nothing dropped


@needs_wandb
@pytest.mark.parametrize("durable", [True, False])
def test_resume_continues_a_cleanly_ended_wandb_run_else_replaces_it(tmp_path, durable):
    config = ExperimentConfig(experiment_name=f"backfill_{durable}")
    first = ExperimentTracker(config, log_dir=tmp_path, sinks=[InMemorySink()])
    train(first, 0, 5)
    first.close()
    log = load_experiment_log(first.path)
    # The last mirror had sent iterations 0..2; durable: it ended its W&B run cleanly.
    log.mirrors["wandb"] = {
        "run_id": f"bkfill0{int(durable)}",
        "status": "unfinished" if durable else "running",
        "durable": durable,
        "rows": 3,
        "evals": 0,
        "through_iteration": 2,
    }
    sink = WandbSink(in_process=True)
    state = sink.bind(log)
    sink.start(log)
    sink.finish(log)
    rows = wr.history(sink.sync_dir)
    if durable:  # the same W&B run gets only what it lacks
        assert state["run_id"] == "bkfill01" and "replaced" not in state
        assert [r["iteration"] for r in rows if "train/loss" in r] == [3, 4]
        assert [r["iteration"] for r in rows if "val/loss" in r] == [4]
    else:  # what a killed mirror left is unknown: a new run with the whole history
        assert state["run_id"] != "bkfill00" and state["replaced"] == "bkfill00"
        assert [r["iteration"] for r in rows if "train/loss" in r] == [0, 1, 2, 3, 4]


@needs_wandb
def test_push_uploads_whole_history_once(tmp_path):
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="offline_trained"), log_dir=tmp_path
    )
    train(tracker, 0, 25)
    tracker.finish()
    first = push_run(tracker.path)
    assert first["pushed"] is True
    rows = wr.history(first["sync_dir"])
    assert [r["iteration"] for r in rows if "train/loss" in r] == list(range(25))
    second = push_run(tracker.path)
    assert second["pushed"] is False and second["run_id"] == first["run_id"]
    assert load_experiment_log(tracker.path).mirrors["wandb"]["run_id"] == first["run_id"]


@needs_wandb
def test_push_a_crashed_run(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="crashed_push"), log_dir=tmp_path)
    train(tracker, 0, 8)
    tracker.close()
    result = push_run(
        tracker.path.with_suffix(".jsonl") if not tracker.path.exists() else tracker.path
    )
    assert result["pushed"]
    rows = wr.history(result["sync_dir"])
    assert [r["iteration"] for r in rows if "train/loss" in r] == list(range(8))
    assert load_experiment_log(tracker.path).status == "unfinished"


@needs_wandb
def test_cli_push_twice(tmp_path):
    import subprocess

    tracker = ExperimentTracker(ExperimentConfig(experiment_name="cli_push"), log_dir=tmp_path)
    train(tracker, 0, 5)
    tracker.finish()
    cmd = [sys.executable, "-m", "cs336_basics", "push", "cli_push", "--log-dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}  # wandb would talk
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stderr
    assert "pushed 5 rows" in first.stdout
    assert len(first.stdout.splitlines()) == 1 and "wandb:" not in first.stdout + first.stderr
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 0 and "not pushed: already written offline" in second.stdout
    assert "wandb sync" in second.stdout
    verbose = subprocess.run([*cmd, "-v", "--force"], capture_output=True, text=True, timeout=120,
                             env=env)  # fmt: skip
    assert verbose.returncode == 0 and "wandb" in verbose.stdout + verbose.stderr


@needs_wandb
def test_disabled_mode_is_not_recorded_as_a_mirror(tmp_path):
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="disabled"),
        log_dir=tmp_path,
        sinks=[WandbSink(mode="disabled")],
    )
    train(tracker, 0, 4)
    tracker.finish()
    state = load_experiment_log(tracker.path).mirrors["wandb"]
    assert state["status"] == "disabled" and state["sync_dir"] is None
    pushed = push_run(tracker.path)  # so a later push really uploads it
    assert pushed["pushed"] is True
    assert [r["iteration"] for r in wr.history(pushed["sync_dir"]) if "train/loss" in r] == [
        0,
        1,
        2,
        3,
    ]


@needs_wandb
@pytest.mark.filterwarnings("error")
def test_hanging_wandb_log_never_blocks_training(tmp_path, monkeypatch, caplog):
    from wandb.sdk.wandb_run import Run

    release = threading.Event()
    real_log = Run.log

    def hanging_log(self, data, *args, **kwargs):
        release.wait(30)
        return real_log(self, data, *args, **kwargs)

    monkeypatch.setattr(Run, "log", hanging_log)
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="wb_hang"),
        log_dir=tmp_path,
        sinks=[WandbSink(in_process=True)],
    )
    start = time.perf_counter()
    train(tracker, 0, 200)
    assert time.perf_counter() - start < 2.0  # the training thread never waited on W&B
    with expect_log(caplog, "did not finish within 1.0 s"):
        log = tracker.finish(sink_timeout=1.0)
    release.set()
    for thread in threading.enumerate():  # let the abandoned mirror finish before wandb exits
        if thread.name == "cs336-sinks":
            thread.join(30)
    local = load_experiment_log(tracker.path)
    assert len(local.metrics_history) == 200 and local.status == "finished"
    assert log.mirrors["wandb"]["status"] != "finished"  # so `push` will upload it


@needs_wandb
def test_push_of_an_unfinished_run_in_disabled_mode_is_not_a_mirror(tmp_path):
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="unfinished_disabled"), log_dir=tmp_path
    )
    train(tracker, 0, 3)
    tracker.close()
    state = push_run(tracker.path, mode="disabled")
    assert state["pushed"] is True and state["status"] == "disabled"
    again = push_run(tracker.path)  # nothing reached W&B, so this one really uploads
    assert again["pushed"] is True and again["status"] == "finished"
    assert wr.summary(again["sync_dir"])["local_status"] == "unfinished"


@needs_wandb
def test_a_burst_of_100k_rows_reaches_wandb_whole_with_its_summary_and_exit_code(tmp_path):
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="burst"), log_dir=tmp_path, sinks=["wandb"]
    )
    for i in range(100_000):
        tracker.log_metrics(i, 1.0 / (i + 1), 1e-3)
        tracker.increment_gradient_step()
        if (i + 1) % 100 == 0:
            tracker.log_eval(iteration=i, val_loss=2.0 / (i + 1))
    started = time.perf_counter()
    tracker.finish(sink_timeout=600)
    waited = time.perf_counter() - started
    print(f"finish() waited {waited:.1f} s for the mirror")
    state = load_experiment_log(tracker.path).mirrors["wandb"]
    assert state["status"] == "finished" and "dropped_events" not in state
    assert state["rows"] == 100_000 and state["evals"] == 1_000
    recs = wr.records(state["sync_dir"], timeout=120)
    rows = [r["history"]["item"] for r in recs if r.get("type") == "history"]
    assert sum("train/loss" in r for r in rows) == 100_000
    assert sum("val/loss" in r for r in rows) == 1_000
    summary = wr.summary(state["sync_dir"])
    assert same(summary["best_val_loss"], 2.0 / 100_000)
    (exit_record,) = [r for r in recs if r.get("type") == "exit"]
    assert exit_record["exit"].get("exit_code", 0) == 0


@needs_wandb
def test_rows_with_only_extra_metrics_reach_wandb(tmp_path):
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="extras_only"), log_dir=tmp_path, sinks=["wandb"]
    )
    for i in range(4):
        tracker.log_metrics(iteration=i, grad_norm=0.5 + i)  # no guide field at all
    tracker.finish()
    state = load_experiment_log(tracker.path).mirrors["wandb"]
    rows = [r for r in wr.history(state["sync_dir"]) if "extra/grad_norm" in r]
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3]
    assert [wr.as_float(r["extra/grad_norm"]) for r in rows] == [0.5, 1.5, 2.5, 3.5]
