"""``cs336-exp import PATH`` / ``import_wandb_runs``: offline wandb runs -> local runs.

The ``.wandb`` files are written by the real client (offline, in a subprocess) and read
back with wandb's own reader; no server, no network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import requires
from wandb_records import offline_env

from cs336_basics import ExperimentAnalyzer, import_wandb_runs, load_experiment_log
from cs336_basics.cli import main
from cs336_basics.core.errors import LogFormatError, UsageError
from cs336_basics.wandb_adapter import wandb_file

# The .wandb files are written, and read back, by the real wandb client.
pytestmark = requires("wandb")

WRITER = textwrap.dedent(
    """
    import time
    import wandb

    run = wandb.init(project="owt", name="nano", id="nano1",
                     config={"learning_rate": 6e-4, "batch_size": 12, "dataset": "owt"},
                     notes="baseline")
    for it in range(0, 100):
        row = {"iter": it, "train/loss": 3.0 - it / 100, "lr": 6e-4, "mfu": 30.0}
        if it % 25 == 24:
            row["val/loss"] = 3.1 - it / 100
        run.log(row)
    run.log({"caption": "a string", "iter": 99})
    run.summary["best_val_loss"] = 2.0
    run.finish()

    for session, code in ((0, 1), (1, 0)):  # crashed, then resumed offline
        time.sleep(1.1)  # offline folders are named by id and second: one per session
        run = wandb.init(project="owt", id="resumed", resume="allow", name="again")
        for i in range(5):
            run.log({"loss": 2.0 - session - i / 10})
        run.finish(exit_code=code)

    for project, loss in (("A", 5.0), ("B", 7.0)):  # one id in two projects: two runs
        time.sleep(1.1)
        run = wandb.init(project=project, id="dupid", name=f"dup_{project}")
        run.log({"loss": loss})
        run.finish()

    run = wandb.init(project="..evil", id="crash1", name="../../evil")
    run.log({"loss": 1.0})
    run.finish(exit_code=1)
    wandb.teardown()
    """
)


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("offline")
    env = dict(os.environ, **offline_env(base))
    env.pop("WANDB_SERVICE", None)  # not this test process's wandb service: its own
    subprocess.run([sys.executable, "-c", WRITER], env=env, check=True, timeout=120)
    return base / "runs" / "wandb"


def _by_name(logs: list) -> dict:
    return {log.experiment_name: log for log in logs}


def test_import_maps_history_config_summary_like_pull(offline_runs: Path, tmp_path: Path) -> None:
    logs = _by_name(import_wandb_runs(offline_runs, save_dir=tmp_path))
    assert set(logs) == {"nano", "again", "../../evil", "dup_A", "dup_B"}
    assert [r.train_loss for r in logs["dup_A"].metrics_history] == [5.0]  # not merged
    assert [r.train_loss for r in logs["dup_B"].metrics_history] == [7.0]
    nano = logs["nano"]
    assert nano.status == "finished" and nano.notes == "baseline"
    assert len(nano.metrics_history) == 100 and nano.superseded_history == []
    row = nano.metrics_history[24]
    assert (row.iteration, row.train_loss, row.val_loss) == (24, 2.76, pytest.approx(2.86))
    assert row.learning_rate == 6e-4 and row.extra == {"mfu": 30.0}
    assert nano.config.max_learning_rate == 6e-4 and nano.config.batch_size == 12
    assert nano.config.dataset == "owt"
    assert nano.best_val_loss == 2.0  # the run's summary wins, as in pull
    assert nano.final_train_loss == pytest.approx(2.01) and nano.duration_seconds > 0
    assert nano.run_id == "wandb_run_owt_nano1"
    mirror = nano.mirrors["wandb"]
    assert mirror["run_id"] == "nano1" and mirror["status"] == "imported"
    assert load_experiment_log(tmp_path / "wandb_run_owt_nano1.json") == nano


def test_resumed_offline_sessions_become_one_run(offline_runs: Path) -> None:
    logs = _by_name(import_wandb_runs(offline_runs, show_progress=False))
    again = logs["again"]
    assert again.status == "finished"  # the last session ended cleanly
    assert [r.iteration for r in again.metrics_history] == list(range(10))
    assert [r.train_loss for r in again.metrics_history][4:6] == [pytest.approx(1.6), 1.0]
    assert len(again.mirrors["wandb"]["files"]) == 2
    assert logs["../../evil"].status == "unfinished"


def test_cli_import_then_list_and_nothing_outside_the_log_dir(
    offline_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_dir = tmp_path / "logs"
    assert main(["import", str(offline_runs), "--log-dir", str(log_dir)]) == 0
    assert {p.parent for p in tmp_path.rglob("*.json")} == {log_dir}
    assert sorted(p.name for p in log_dir.iterdir() if not p.name.startswith(".")) == [
        "wandb_run_A_dupid.json",
        "wandb_run_B_dupid.json",
        "wandb_run_evil_crash1.json",
        "wandb_run_owt_nano1.json",
        "wandb_run_owt_resumed.json",
    ]
    before = (log_dir / "wandb_run_owt_nano1.json").read_bytes()
    single = next(offline_runs.glob("offline-run-*-nano1/run-nano1.wandb"))
    assert main(["import", str(single), "--log-dir", str(log_dir), "--json"]) == 0  # overwrites
    assert len([p for p in log_dir.iterdir() if not p.name.startswith(".")]) == 5
    assert (log_dir / "wandb_run_owt_nano1.json").read_bytes() == before
    capsys.readouterr()
    assert main(["list", "--log-dir", str(log_dir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 5
    analyzer = ExperimentAnalyzer(log_dir)
    analyzer.load_all(quiet=True)
    assert analyzer.get_best_experiment("val_loss")[0]


def test_bad_paths_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(tmp_path / "missing"), "--log-dir", str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["import", str(tmp_path), "--log-dir", str(tmp_path / "out")]) == 2
    assert "no run-*.wandb file" in capsys.readouterr().err
    bad = tmp_path / "offline-run-x" / "run-bad.wandb"
    bad.parent.mkdir()
    bad.write_bytes(b"not a wandb file")
    with pytest.raises(LogFormatError, match="run-bad.wandb"):
        import_wandb_runs(bad)
    assert main(["import", str(bad), "--log-dir", str(tmp_path / "out")]) == 2
    assert "run-bad.wandb" in capsys.readouterr().err
    other = tmp_path / "other.wandb"
    other.write_bytes(b"")
    with pytest.raises(UsageError, match="expected a run-<id>.wandb"):
        import_wandb_runs(other)


def test_datastore_records_convert_like_leet() -> None:
    """wandb <= 0.29 has no leet: its DataStore's protobuf records get the same shape."""
    from wandb.proto import wandb_internal_pb2 as pb

    record = pb.Record()
    record.history.item.add(key="train/loss", value_json="1.5")
    record.history.item.add(nested_key=["a", "b"], value_json="2")
    assert wandb_file.record_to_dict(record) == {
        "type": "history",
        "history": {"item": {"train/loss": 1.5, "a.b": 2}},
    }
    record = pb.Record()
    record.run.run_id = "x1"
    record.run.display_name = "name"
    record.run.config.update.add(key="lr", value_json='{"value": 0.1}')
    converted = wandb_file.record_to_dict(record)
    assert converted is not None and converted["run"]["config"]["update"] == {"lr": {"value": 0.1}}
    record = pb.Record()
    record.exit.exit_code = 3
    assert wandb_file.record_to_dict(record) == {"type": "exit", "exit": {"exit_code": 3}}


def test_the_projects_own_mirrors_are_not_imported_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`cs336-exp import wandb/` in a project whose runs were mirrored offline: the mirrors
    are those runs again (their config names them), so nothing new appears."""
    from cs336_basics import ExperimentConfig, ExperimentTracker, WandbSink

    logs = tmp_path / "logs"
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="mine"),
        log_dir=logs,
        sinks=[WandbSink(mode="offline", dir=str(tmp_path))],
    )
    for i in range(5):
        tracker.log_metrics(iteration=i, train_loss=1.0 / (i + 1))
    tracker.finish()
    before = sorted(p.name for p in logs.iterdir())
    with caplog.at_level("WARNING", logger="cs336_basics"):
        assert main(["import", str(tmp_path / "wandb"), "--log-dir", str(logs)]) == 0
    assert sorted(p.name for p in logs.iterdir()) == before  # no duplicate
    said = [r.getMessage() for r in caplog.records if "mirrors the local run" in r.getMessage()]
    assert len(said) == 1 and tracker.run_id in said[0]
    assert main(["import", str(tmp_path / "wandb"), "--log-dir", str(logs), "--force"]) == 0
    imported = [p for p in logs.glob("wandb_*.json")]
    assert len(imported) == 1
    assert len(load_experiment_log(imported[0]).metrics_history) == 5
