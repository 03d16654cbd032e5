import math
import socket
import time

import pytest
import wandb_records as wr
from fake_wandb import API_KEY, FakeRun, FakeWandb
from helpers import need, requires, run_files_in

from cs336_basics.core.errors import WandbPullError
from cs336_basics.experiment_analysis import ExperimentAnalyzer
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker
from cs336_basics.wandb_adapter.pull import pull_runs

pytestmark = [pytest.mark.slow, requires("wandb")]


def _client_speaks_requests() -> bool:
    """wandb's public API sends GraphQL through ``requests`` up to 0.26, then through the
    wandb-core service (which ``responses`` cannot see)."""
    from importlib.metadata import version

    major, minor = (int(part) for part in version("wandb").split(".")[:2])
    return (major, minor) < (0, 27)


@pytest.fixture
def server(monkeypatch):
    fake = FakeWandb()
    monkeypatch.setenv("WANDB_BASE_URL", fake.url)
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    monkeypatch.setenv("WANDB_ENTITY", "ent")
    if _client_speaks_requests():
        need("responses")
        with fake.intercept_requests():  # answered by `responses`, no HTTP
            yield fake
    else:
        yield fake  # the service's own HTTP client talks to the fake on 127.0.0.1
    fake.close()


def rows(n, nan_at=None):
    out = []
    for i in range(n):
        row = {
            "_step": i,
            "_runtime": 0.5 * i,
            "iteration": i,
            "gradient_step": i + 1,
            "wallclock_time": 0.5 * i,
            "train/loss": 5.0 - 0.001 * i,
            "train/lr": 1e-3,
        }
        if i == nan_at:
            row["train/loss"] = float("nan")
        out.append(row)
    return out


def test_runs_and_history_are_paginated(server):
    for k in range(7):
        server.add("proj", FakeRun(id=f"run{k}", name=f"sweep_{k}", history=rows(1200)))
    logs = pull_runs("ent/proj", per_page=3)
    assert len(logs) == 7
    assert [log.experiment_name for log in logs] == [f"sweep_{k}" for k in range(7)]
    assert server.requests.count("Runs") >= 3  # 7 runs, 3 per page
    # requests-speaking clients are answered through `responses`; others over HTTP.
    assert (server.http_posts == 0) == _client_speaks_requests()
    assert server.history_pages >= 7 * 2  # 1200 rows do not fit one history page
    for log in logs:
        assert [r.iteration for r in log.metrics_history] == list(range(1200))
        assert log.metrics_history[-1].train_loss == pytest.approx(5.0 - 1.199)


def test_config_unwrapped_aliases_and_unknown_keys_kept(server):
    server.add(
        "proj",
        FakeRun(
            id="r1",
            name="foreign",
            config={"lr": 3e-4, "min_lr": 3e-5, "batch_size": 32, "norm": "post", "d_model": 256},
        ),
    )
    log = pull_runs("proj")[0]
    assert log.config.max_learning_rate == 3e-4 and log.config.min_learning_rate == 3e-5
    assert log.config.batch_size == 32 and log.config.d_model == 256
    assert log.config.norm == "post"
    assert "_wandb" not in log.config.to_dict()
    assert log.experiment_name == "foreign"


def test_nan_infinity_and_summary(server):
    history = rows(10, nan_at=7)
    history[3]["train/lr"] = float("inf")
    server.add(
        "proj",
        FakeRun(
            id="r1",
            name="div",
            history=history,
            summary={"best_val_loss": float("nan"), "_runtime": 12.5},
        ),
    )
    log = pull_runs("ent/proj")[0]
    assert math.isnan(log.metrics_history[7].train_loss)
    assert log.metrics_history[3].learning_rate == math.inf
    assert log.diverged_at == 7
    assert log.duration_seconds == 12.5
    assert math.isnan(log.best_val_loss)
    analyzer = ExperimentAnalyzer()
    analyzer.add(log)
    with pytest.raises(ValueError, match="finite"):
        analyzer.get_best_experiment("train_loss")  # a diverged run is never best


def test_foreign_key_names_and_missing_keys(server):
    history = [
        {"_step": 0, "_runtime": 1.0, "loss": 4.0, "lr": 1e-3, "grad_norm": 2.0},
        {"_step": 1, "_runtime": 2.0, "loss": 3.5},
        {"_step": 2, "_runtime": 3.0, "eval/loss": 3.6},
        {"_step": 3, "_runtime": 4.0, "train_loss": 3.0, "epoch": 1, "samples": "text"},
    ]
    server.add("proj", FakeRun(id="r1", name="nanogpt", history=history))
    log = pull_runs("ent/proj")[0]
    got = [(r.iteration, r.train_loss, r.val_loss, r.learning_rate) for r in log.metrics_history]
    assert got == [
        (0, 4.0, None, 1e-3),
        (1, 3.5, None, None),
        (2, None, 3.6, None),
        (3, 3.0, None, None),
    ]
    assert log.metrics_history[0].extra == {"grad_norm": 2.0}
    assert log.metrics_history[3].extra == {"epoch": 1.0}  # strings are not curves
    assert [r.wallclock_time for r in log.metrics_history] == [1.0, 2.0, 3.0, 4.0]


def test_user_alias_table_overrides(server):
    server.add("proj", FakeRun(id="r1", name="custom", history=[{"_step": 0, "my/objective": 2.0}]))
    log = pull_runs("ent/proj", key_aliases={"train_loss": ("my/objective",)})[0]
    assert log.metrics_history[0].train_loss == 2.0


def test_run_with_no_history(server):
    server.add("proj", FakeRun(id="r1", name="empty", state="crashed"))
    log = pull_runs("ent/proj")[0]
    assert log.metrics_history == [] and log.status == "unfinished"


def test_filters_by_id_name_and_state(server):
    server.add("proj", FakeRun(id="a", name="one", history=rows(2)))
    server.add("proj", FakeRun(id="b", name="two", history=rows(2), state="crashed"))
    server.add("proj", FakeRun(id="c", name="three", history=rows(2)))
    assert [log.experiment_name for log in pull_runs("ent/proj", run_ids=["b", "c"])] == [
        "two",
        "three",
    ]
    assert [log.experiment_name for log in pull_runs("ent/proj", names=["one"])] == ["one"]
    assert [log.experiment_name for log in pull_runs("ent/proj", state="finished")] == [
        "one",
        "three",
    ]


def test_save_then_pull_again_updates_the_same_files(server, tmp_path):
    server.add("proj", FakeRun(id="a", name="one", history=rows(5)))
    pull_runs("ent/proj", save_dir=tmp_path)
    first = run_files_in(tmp_path)
    server.projects["proj"][0].history = rows(8)
    pull_runs("ent/proj", save_dir=tmp_path)
    assert run_files_in(tmp_path) == first == ["wandb_ent_proj_a.json"]
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all()
    assert len(analyzer.logs["one"].metrics_history) == 8


def test_load_wandb_mixes_with_local_runs(server, tmp_path):
    local = ExperimentTracker(ExperimentConfig(experiment_name="local_run"), log_dir=tmp_path)
    for i in range(5):
        local.log_metrics(iteration=i, train_loss=4.0 - i * 0.5)
    local.log_eval(iteration=4, val_loss=2.5)
    local.finish()
    server.add(
        "proj",
        FakeRun(
            id="a",
            name="cloud_run",
            history=rows(5) + [{"_step": 5, "iteration": 4, "val/loss": 1.5}],
        ),
    )
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all()
    keys = analyzer.load_wandb("ent/proj")
    assert keys == ["cloud_run"] and set(analyzer.logs) == {"local_run", "cloud_run"}
    assert analyzer.get_best_experiment("val_loss") == ("cloud_run", 1.5)
    assert "cloud_run" in analyzer.get_comparison_table()
    out = analyzer.export_csv("cloud_run", tmp_path / "cloud.csv")
    assert out.read_text().splitlines()[0].startswith("iteration,gradient_step")


def test_unknown_project_names_it(server):
    with pytest.raises(WandbPullError, match="'ent/nope'"):
        pull_runs("ent/nope")


def test_bad_api_key(server, monkeypatch):
    server.add("proj", FakeRun(id="a", name="one"))
    monkeypatch.setenv("WANDB_API_KEY", "z" * 40)
    with pytest.raises(WandbPullError, match="W&B|ent/proj"):
        pull_runs("ent/proj", timeout=3)


def test_server_down(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    monkeypatch.setenv("WANDB_ENTITY", "ent")
    started = time.monotonic()
    with pytest.raises(WandbPullError):
        pull_runs("ent/proj", timeout=2)
    # Bounded by the timeout on every release (some retry a refused connection for days).
    assert time.monotonic() - started < 2 * 2 + 1 + 5


def test_history_failure_is_never_saved_as_complete(server, tmp_path):
    server.add("proj", FakeRun(id="a", name="ok", history=rows(3)))
    server.add("proj", FakeRun(id="b", name="broken", history=rows(3), fail_history=True))
    with pytest.raises(WandbPullError, match="run b .*nothing of it was saved"):
        pull_runs("ent/proj", save_dir=tmp_path)
    assert run_files_in(tmp_path) == ["wandb_ent_proj_a.json"]


def test_round_trip_local_to_wandb_to_local(server, tmp_path):
    config = ExperimentConfig(experiment_name="roundtrip", norm="post", max_learning_rate=2e-3)
    tracker = ExperimentTracker(config, log_dir=tmp_path / "local", sinks=["wandb"])
    for i in range(40):
        loss = float("nan") if i == 33 else 5.0 / (1 + i)
        tracker.log_metrics(
            iteration=i,
            train_loss=loss,
            learning_rate=1e-3 * (1 + i % 3),
            tokens_per_sec=900.0 + i,
            iter_time_ms=3.25,
            grad_norm=0.1 * i,
        )
        tracker.increment_gradient_step()
        if (i + 1) % 10 == 0:
            tracker.log_eval(iteration=i, train_loss=loss, val_loss=6.0 / (1 + i))
    tracker.log_eval(iteration=41, val_loss=0.3)  # an eval with no training row
    original = tracker.finish(notes="round trip")
    sync_dir = original.mirrors["wandb"]["sync_dir"]
    items = [r["history"]["item"] for r in wr.records(sync_dir) if r.get("type") == "history"]
    summary = wr.summary(sync_dir)
    server.add(
        "proj",
        FakeRun(
            id=original.mirrors["wandb"]["run_id"],
            name="roundtrip",
            config=config.to_dict(),
            summary=summary,
            history=items,
            notes="round trip",
        ),
    )
    pulled = pull_runs("ent/proj")[0]

    assert pulled.config == original.config
    assert len(pulled.metrics_history) == len(original.metrics_history) == 41
    for a, b in zip(original.metrics_history, pulled.metrics_history, strict=True):
        da, db = a.to_dict(), b.to_dict()
        assert da.keys() == db.keys()
        for key in da:
            x, y = da[key], db[key]
            if isinstance(x, float) and math.isnan(x):
                assert math.isnan(y), key
            else:
                assert x == y, (a.iteration, key, x, y)
    for name in (
        "best_train_loss",
        "best_val_loss",
        "final_train_loss",
        "final_val_loss",
        "duration_seconds",
    ):
        assert getattr(pulled, name) == getattr(original, name), name
    assert pulled.notes == "round trip"
    assert pulled.mirrors["wandb"]["run_id"] == original.mirrors["wandb"]["run_id"]


def test_cli_pull_saves_runs_into_the_log_dir(server, tmp_path):
    import json
    import subprocess
    import sys

    server.add("proj", FakeRun(id="a", name="cloud", history=rows(6)))
    cmd = [
        sys.executable,
        "-m",
        "cs336_basics",
        "pull",
        "ent/proj",
        "--log-dir",
        str(tmp_path),
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["rows"] == 6
    proc = subprocess.run(
        [sys.executable, "-m", "cs336_basics", "pull", "ent/missing", "--log-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "'ent/missing'" in proc.stderr
    assert "Traceback" not in proc.stderr
