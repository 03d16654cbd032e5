"""The training example, run for real (CPU, a few iterations) in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
import wandb_records as wr  # noqa: E402

from cs336_basics.experiment_log import load_experiment_log  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "training_together.py"
SMALL = [
    "--d-model",
    "32",
    "--num-layers",
    "1",
    "--num-heads",
    "2",
    "--d-ff",
    "64",
    "--context-length",
    "32",
    "--batch-size",
    "8",
    "--eval-iters",
    "2",
    "--warmup-iters",
    "3",
    "--log-interval",
    "1",
    "--no-plot",
]

pytestmark = pytest.mark.slow


def run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--log-dir",
            str(tmp_path / "logs"),
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--data-dir",
            str(tmp_path / "data"),
            *SMALL,
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def only_run(tmp_path: Path) -> Path:
    runs = sorted((tmp_path / "logs").glob("*.json"))
    assert len(runs) == 1, runs
    return runs[0]


def test_short_run_writes_a_complete_log_and_loss_falls(tmp_path):
    proc = run_script(tmp_path, "--max-iters", "40", "--eval-interval", "10", "--lr", "1e-2")
    assert "best val loss" in proc.stdout
    path = only_run(tmp_path)
    doc = json.loads(path.read_text())
    rows = doc["metrics_history"]
    assert [r["iteration"] for r in rows] == list(range(40))
    assert [r["gradient_step"] for r in rows] == list(range(1, 41))
    vals = [r["val_loss"] for r in rows if r["val_loss"] is not None]
    assert len(vals) == 4 and vals[-1] < vals[0] - 0.5  # byte-level loss starts near ln 256
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert all(r["tokens_per_sec"] > 0 and r["iter_time_ms"] > 0 for r in rows)
    assert rows[0]["learning_rate"] == pytest.approx(1e-2 / 3)  # warmup step 1 of 3
    assert doc["config"]["d_model"] == 32 and doc["config"]["dtype"] == "fp32"
    assert doc["status"] == "finished" and doc["final_val_loss"] == vals[-1]
    assert not path.with_suffix(".jsonl").exists()


def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    run_script(tmp_path, "--max-iters", "6", "--eval-interval", "3", "--grad-accum", "3")
    log = load_experiment_log(only_run(tmp_path))
    assert [r.gradient_step for r in log.metrics_history] == list(range(1, 7))
    assert log.config.batch_size == 24 and log.config.grad_accum == 3
    assert log.tokens_seen == 24 * 32 * 6


def test_sink_wandb_mirrors_the_same_rows(tmp_path):
    run_script(tmp_path, "--max-iters", "12", "--eval-interval", "4", "--sink", "wandb")
    log = load_experiment_log(only_run(tmp_path))
    state = log.mirrors["wandb"]
    assert state["status"] == "finished"
    history = wr.history(state["sync_dir"])
    train_rows = [r for r in history if "train/loss" in r]
    assert [r["iteration"] for r in train_rows] == [r.iteration for r in log.metrics_history]
    for got, row in zip(train_rows, log.metrics_history, strict=True):
        assert float(got["train/loss"]) == row.train_loss
        assert float(got["train/lr"]) == row.learning_rate
    assert [float(r["val/loss"]) for r in history if "val/loss" in r] == [
        r.val_loss for r in log.metrics_history if r.val_loss is not None
    ]


def test_stop_and_resume_gives_one_continuous_curve(tmp_path):
    common = ["--max-iters", "30", "--eval-interval", "10", "--checkpoint-interval", "100"]
    run_script(tmp_path, *common, "--stop-at", "9")
    ckpt = tmp_path / "ckpt" / "tinylm_pydoc.pt"
    shutil.copy(ckpt, tmp_path / "at9.pt")
    # Resume and stop again at 14 ...
    run_script(tmp_path, *common, "--resume", str(ckpt), "--stop-at", "14")
    partial = load_experiment_log(only_run(tmp_path))
    assert partial.status == "unfinished" and partial.metrics_history[-1].iteration == 14
    # ... then resume from the *older* checkpoint at 9: rows 10..14 are superseded.
    run_script(tmp_path, *common, "--resume", str(tmp_path / "at9.pt"))
    log = load_experiment_log(only_run(tmp_path))
    assert log.status == "finished"
    iterations = [r.iteration for r in log.metrics_history]
    assert iterations == list(range(30))
    assert [r.gradient_step for r in log.metrics_history] == list(range(1, 31))
    assert [r.iteration for r in log.superseded_history] == [10, 11, 12, 13, 14]
    walls = [r.wallclock_time for r in log.metrics_history]
    assert walls == sorted(walls)
