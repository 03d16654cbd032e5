"""Real training frameworks, unchanged, through the drop-in's launcher.

``python -m cs336_basics.wandb_compat SCRIPT`` runs the Hugging Face ``Trainer``
(``report_to=["wandb"]``), Lightning's ``WandbLogger`` (with ``LearningRateMonitor``),
accelerate's W&B tracker and a script shaped like nanoGPT's ``train.py``, each tiny on the
CPU, with the real wandb client offline for the mirror. Each script writes down what it
handed to W&B; every such value must be in the local document (under the guide's field or
as an extra metric, or in the summary) and in the offline W&B run, and no setting the
script did not make may appear as set.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import wandb_records
from helpers import requires

from cs336_basics import load_experiment_log

HERE = Path(__file__).resolve().parent / "frameworks"
# The W&B mirror needs wandb; every framework here trains with torch.
pytestmark = [pytest.mark.slow, requires("wandb", "torch")]


def launch(tmp_path: Path, script: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``script`` through the drop-in's launcher; returns the run's local log."""
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "cs336_basics.wandb_compat", "--log-dir", str(logs)]
    result = subprocess.run(
        [*command, str(HERE / script), *args],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (document,) = logs.glob("*.json")
    return load_experiment_log(document)


def local_value(row: Any, name: str) -> Any:
    if name in ("train_loss", "val_loss", "learning_rate"):
        return getattr(row, name)
    return (row.extra or {}).get(name)


def wandb_rows(log: Any) -> dict[int, dict[str, float]]:
    """The offline W&B run's rows, merged by this project's iteration axis."""
    state = log.mirrors["wandb"]
    assert state["status"] == "finished" and state["mode"] == "offline", state
    merged: dict[int, dict[str, float]] = {}
    for row in wandb_records.history(state["sync_dir"]):
        if "iteration" not in row:  # a system-metrics sample (system/* keys), every 10 s
            assert any(key.startswith("system/") for key in row), row
            continue
        merged.setdefault(int(row["iteration"]), {}).update(row)
    return merged


def check(log: Any, logged: list[tuple[int, str, float]], table: dict[str, tuple[str, str]]):
    """Every (iteration, key, value) logged is in the local run and in the W&B run."""
    rows = {row.iteration: row for row in log.metrics_history}
    remote = wandb_rows(log)
    checked = 0
    for iteration, key, value in logged:
        if key not in table:
            continue
        local_name, wandb_key = table[key]
        assert iteration in rows, (iteration, key)
        assert local_value(rows[iteration], local_name) == pytest.approx(value), (iteration, key)
        assert remote[iteration][wandb_key] == pytest.approx(value), (iteration, key)
        checked += 1
    assert checked >= len(logged) // 2, "most logged values must be compared"
    assert log.superseded_history == []  # one iteration in several calls is no restart
    return checked


@requires("transformers", "accelerate")
def test_hugging_face_trainer(tmp_path: Path) -> None:
    logged_file = tmp_path / "logged.json"
    env = {"WANDB_TAGS": "hf,tiny", "WANDB_RUN_GROUP": "frameworks", "WANDB_NOTES": "a note"}
    log = launch(tmp_path, "hf_trainer.py", str(tmp_path / "out"), str(logged_file), env=env)
    history = json.loads(logged_file.read_text())
    logged = []
    for entry in history:
        for key, value in entry.items():
            if key not in ("step",) and isinstance(value, (int, float)):
                logged.append((entry["step"], key, float(value)))
    table = {
        "loss": ("train_loss", "train/loss"),
        "learning_rate": ("learning_rate", "train/lr"),
        "grad_norm": ("train/grad_norm", "train/grad_norm"),
        "eval_loss": ("val_loss", "val/loss"),
        "eval_runtime": ("eval/runtime", "eval/runtime"),
        "eval_samples_per_second": ("eval/samples_per_second", "eval/samples_per_second"),
    }
    assert check(log, logged, table) >= 20
    epochs = [(s, v) for s, k, v in logged if k == "epoch"]
    rows = {row.iteration: row for row in log.metrics_history}
    assert all(rows[s].extra["train/epoch"] == pytest.approx(v) for s, v in epochs)
    # The values set in run.summary at the end of training: kept locally and on W&B.
    final = history[-1]
    summary = wandb_records.summary(log.mirrors["wandb"]["sync_dir"])
    for key in ("train_runtime", "total_flos", "train_loss"):
        assert log.summary[key] == pytest.approx(final[key])
        assert summary[key] == pytest.approx(final[key])
    assert log.final_train_loss == rows[30].train_loss  # HF's run-average is no step loss
    assert log.tags == ["hf", "tiny"] and log.group == "frameworks" and log.notes == "a note"
    record = wandb_records.run_record(log.mirrors["wandb"]["sync_dir"])
    assert list(record.get("tags") or []) == ["hf", "tiny"]
    assert record.get("run_group") == "frameworks"
    # What the script set, and nothing else: the model's and the trainer's settings.
    config = log.config
    assert config.vocab_size == 64 and config.max_iters == 30 and config.max_learning_rate == 1e-3
    assert config.d_ff is None and config.context_length is None and config.batch_size is None
    assert log.results().tokens is None  # never derived from a default


@requires("lightning")
def test_lightning_wandb_logger(tmp_path: Path) -> None:
    logged_file = tmp_path / "logged.json"
    log = launch(tmp_path, "lightning_module.py", str(tmp_path / "out"), str(logged_file))
    logged = []
    for entry in json.loads(logged_file.read_text()):
        for key, value in entry.items():
            if key != "step":
                logged.append((entry["step"], key, value))
    table = {
        "lr-AdamW": ("learning_rate", "train/lr"),  # LearningRateMonitor's key
        "train_loss": ("train_loss", "train/loss"),
        "val_loss": ("val_loss", "val/loss"),
        "epoch": ("epoch", "epoch"),
    }
    assert check(log, logged, table) >= 15
    # Lightning's step axis (declared only when the run is a wandb_run.Run): its own steps.
    assert [row.iteration for row in log.metrics_history] == [4, 9, 14, 19, 24, 29]
    assert log.config.max_learning_rate == 0.01 and log.config.extra["hidden"] == 16
    assert log.config.batch_size is None and log.config.num_layers is None


@requires("accelerate")
def test_accelerate_tracker(tmp_path: Path) -> None:
    logged_file = tmp_path / "logged.json"
    log = launch(tmp_path, "accelerate_tracker.py", str(logged_file))
    logged = [
        (entry["step"], key, value)
        for entry in json.loads(logged_file.read_text())
        for key, value in entry.items()
        if key != "step"
    ]
    table = {
        "train_loss": ("train_loss", "train/loss"),
        "lr": ("learning_rate", "train/lr"),
        "val_loss": ("val_loss", "val/loss"),
    }
    assert check(log, logged, table) == len(logged)
    assert len(log.metrics_history) == 30 and log.config.batch_size == 8


def test_nanogpt_shaped_script(tmp_path: Path) -> None:
    logged_file = tmp_path / "logged.json"
    log = launch(tmp_path, "nanogpt_style.py", f"--logged_json={logged_file}", "--max_iters=15")
    logged = [
        (int(entry["iter"]), key, value)
        for entry in json.loads(logged_file.read_text())
        for key, value in entry.items()
        if key != "iter"
    ]
    table = {
        "train/loss": ("train_loss", "train/loss"),
        "val/loss": ("val_loss", "val/loss"),
        "lr": ("learning_rate", "train/lr"),
        "mfu": ("mfu", "mfu"),
    }
    assert check(log, logged, table) == len(logged)
    config = log.config
    assert config.context_length == 16 and config.num_layers == 1 and config.max_iters == 15
    # nanoGPT seeds 1337 and sets no vocabulary size or d_ff: recorded as set, or not at all.
    assert config.seed == 1337 and config.vocab_size is None and config.d_ff is None
    assert log.results().tokens == 4 * 16 * log.last_gradient_step
    assert not math.isnan(log.best_val_loss)
