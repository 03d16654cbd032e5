"""Mirror processes as the training process sees them (``runtime/mirrors``) and as they run
(``runtime/mirror_child``): they never fail in silence, they import the real wandb whatever
the training script aliased, SIGTERM stops one stuck in a call, and W&B folders of one run
id never collide."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import wandb_records
from dashboard_helpers import wait_until
from helpers import requires

from cs336_basics import (
    ExperimentConfig,
    ExperimentTracker,
    load_experiment_log,
    push_run,
)
from cs336_basics.core.text import format_summary
from cs336_basics.store.fileio import read_state
from cs336_basics.store.layout import RunFiles

pytestmark = pytest.mark.slow
needs_wandb = requires("wandb")  # the W&B mirror

SRC = str(Path(__file__).resolve().parents[1] / "src")


def no_login_env(tmp_path: Path) -> dict[str, str]:
    """No W&B account here: no key, no netrc, a server address that refuses at once."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    env.update(
        HOME=str(tmp_path),
        WANDB_CONFIG_DIR=str(tmp_path / "cfg"),
        WANDB_DIR=str(tmp_path),
        WANDB_BASE_URL="http://127.0.0.1:9",
        PYTHONPATH=SRC,
    )
    return env


@needs_wandb
def test_no_login_says_so_once_shows_offline_and_push_says_how(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import time
        from cs336_basics import ExperimentConfig, ExperimentTracker
        tracker = ExperimentTracker(ExperimentConfig(experiment_name="nologin"),
                                    log_dir="logs", sinks=["wandb"])
        for i in range(10):
            tracker.log_metrics(iteration=i, train_loss=1.0 / (i + 1))
        time.sleep(2.5)  # the mirror has started (and fallen back) while training goes on
        tracker.finish()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=no_login_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "could not start online" in lines[0], result.stderr
    assert "mirrors offline to" in lines[0] and "cs336-exp push" in lines[0]
    (document,) = (tmp_path / "logs").glob("*.json")
    log = load_experiment_log(document)
    state = log.mirrors["wandb"]
    assert state["mode"] == "offline" and state["fallback"] and state["rows"] == 10
    assert (
        "offline" in format_summary(log)
        and "finished" not in format_summary(log).split("mirror wandb:")[1]
    )
    assert len(wandb_records.history(state["sync_dir"])) == 10
    # Pushed offline: nothing new is written, and the answer names the folder to sync.
    answer = push_run(document, mode="offline")
    assert answer["pushed"] is False and f"wandb sync {state['sync_dir']}" in answer["reason"]


@needs_wandb
def test_the_mirror_imports_the_real_wandb_whatever_the_script_aliased(tmp_path: Path) -> None:
    (tmp_path / "wandb.py").write_text(  # beside the script: shadows wandb for it
        "from cs336_basics.wandb_compat import *  # noqa\n"
        "import sys, cs336_basics.wandb_compat as _c\n"
        "sys.modules['wandb'] = _c\n"
    )
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(  # and for every process that inherits PYTHONPATH
        "import sys, cs336_basics.wandb_compat as _c\nsys.modules['wandb'] = _c\n"
    )
    (tmp_path / "train.py").write_text(
        textwrap.dedent(
            """
            import wandb
            assert getattr(wandb, "__cs336_compat__", False), wandb
            run = wandb.init(project="p", name="aliased", mode="offline", log_dir="logs")
            for i in range(5):
                wandb.log({"iter": i, "train/loss": 2.0 - i / 10})
            run.finish()
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), SRC])}
    result = subprocess.run(
        [sys.executable, "train.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (document,) = (tmp_path / "logs").glob("*.json")
    state = load_experiment_log(document).mirrors["wandb"]
    assert state["status"] == "finished", state
    rows = wandb_records.history(state["sync_dir"])
    assert [r["train/loss"] for r in rows] == pytest.approx([2.0 - i / 10 for i in range(5)])


def test_sigterm_stops_a_mirror_stuck_in_a_call_within_seconds(tmp_path: Path) -> None:
    from stuck_sink import StuckSink

    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="stuck"), log_dir=tmp_path, sinks=[StuckSink()]
    )
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.flush()
    state_file = RunFiles.of(tracker.path).mirror_state("stuck")
    wait_until(lambda: read_state(state_file).get("pid"), 30)
    tracker.log_metrics(iteration=1, train_loss=0.5)  # a row the running mirror receives
    tracker.flush()
    wait_until(lambda: read_state(state_file).get("status") == "stuck", 10)
    (mirror,) = tracker._mirrors.processes
    assert mirror.alive
    started = time.monotonic()
    os.kill(mirror.process.pid, signal.SIGTERM)
    assert mirror.wait(10.0), "a stuck mirror must end within a few seconds of SIGTERM"
    assert time.monotonic() - started < 8.0
    state = read_state(state_file)
    assert state["status"] == "incomplete" and "SIGTERM" in state["error"]
    tracker.close()


@needs_wandb
def test_two_offline_runs_of_one_id_in_one_second_keep_their_own_folders(tmp_path: Path) -> None:
    import cs336_basics.wandb_compat as wandb

    folders = []
    for attempt in range(2):  # a quick resume: the same W&B id, well within one second
        run = wandb.init(
            project="p", name="same", id="sameid01", resume="allow", mode="offline",
            log_dir=tmp_path, dir=str(tmp_path),
        )  # fmt: skip
        run.log({"iter": attempt, "train/loss": 1.0 + attempt})
        run.finish()
        state = load_experiment_log(run.local_path).mirrors["wandb"]
        folders.append(state["sync_dir"])
    assert folders[0] != folders[1]
    assert [r["train/loss"] for r in wandb_records.history(folders[0])] == [1.0]
    assert 2.0 in [r.get("train/loss") for r in wandb_records.history(folders[1])]
