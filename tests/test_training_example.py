"""The training example, run for real (CPU, a few iterations): in subprocesses, and in this
process where several short runs are compared (a resume against the uninterrupted run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import wandb_records as wr
from helpers import requires

from cs336_basics.experiment_log import load_experiment_log

pytestmark = requires("torch", "numpy")  # the example trains a real model

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    run_script(tmp_path, "--max-iters", "6", "--eval-interval", "3", "--grad-accum", "3")
    log = load_experiment_log(only_run(tmp_path))
    assert [r.gradient_step for r in log.metrics_history] == list(range(1, 7))
    assert log.config.batch_size == 24 and log.config.grad_accum == 3
    assert log.tokens_seen == 24 * 32 * 6


@pytest.mark.slow
@requires("wandb")
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


@pytest.mark.slow
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


# --------------------------------------------------------------------------- in this process


def example_module():
    """examples/training_together.py, imported (it puts examples/ on sys.path itself)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("training_together", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = [
    "--d-model",
    "16",
    "--num-layers",
    "1",
    "--num-heads",
    "2",
    "--d-ff",
    "32",
    "--context-length",
    "16",
    "--batch-size",
    "4",
    "--eval-iters",
    "2",
    "--warmup-iters",
    "3",
    "--log-interval",
    "1",
    "--max-iters",
    "12",
    "--eval-interval",
    "4",
    "--no-plot",
    "--quiet",
]


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, capsys):
    """`--stop-at` then `--resume` draws the same batches (numpy sampler and torch RNG states
    are in the checkpoint), so every logged loss equals the uninterrupted run's, bit for bit."""
    example = example_module()
    data = ["--data-dir", str(tmp_path / "data")]

    def train(name: str, *extra: str):
        args = [*TINY, *data, "--log-dir", str(tmp_path / name), *extra]
        return example.train(example.parse_args(args))

    whole = train("whole", "--checkpoint-dir", str(tmp_path / "c1"))
    ckpt = tmp_path / "c2" / "tinylm_pydoc.pt"
    stopped = train("parts", "--checkpoint-dir", str(ckpt.parent), "--stop-at", "5")
    assert load_experiment_log(stopped.path).status == "unfinished"
    resumed = train("parts", "--checkpoint-dir", str(ckpt.parent), "--resume", str(ckpt))
    capsys.readouterr()
    a, b = load_experiment_log(whole.path), load_experiment_log(resumed.path)
    assert resumed.path == stopped.path and b.status == "finished"
    losses = [(r.iteration, r.train_loss, r.val_loss) for r in a.metrics_history]
    assert len(losses) == 12 and sum(r[2] is not None for r in losses) == 3
    assert [(r.iteration, r.train_loss, r.val_loss) for r in b.metrics_history] == losses
    assert (b.best_val_loss, b.final_val_loss) == (a.best_val_loss, a.final_val_loss)
    assert b.metrics_history[6].extra["grad_norm"] == a.metrics_history[6].extra["grad_norm"]


def test_config_records_every_setting(tmp_path):
    example = example_module()
    args = example.parse_args(
        ["--eval-interval", "7", "--log-interval", "3", "--eval-iters", "5", "--grad-accum", "2",
         "--checkpoint-interval", "9", "--train-data", str(tmp_path / "t.bin"), "--val-data",
         str(tmp_path / "v.bin"), "--batch-size", "6", "--context-length", "32"]
    )  # fmt: skip
    config = example.make_config(args, "cpu", "fp32").to_dict()
    expected = {
        "eval_interval": 7,
        "log_interval": 3,
        "eval_iters": 5,
        "checkpoint_interval": 9,
        "grad_accum": 2,
        "micro_batch_size": 6,
        "batch_size": 12,  # sequences per optimizer step: tokens per step = 12 x 32
        "device": "cpu",
        "dtype": "fp32",
        "train_data": str(tmp_path / "t.bin"),
        "val_data": str(tmp_path / "v.bin"),
        "seed": 0,
        "tie_embeddings": False,
        "max_learning_rate": 3e-3,
        "experiment_name": "tinylm_pydoc",
    }
    assert {k: config.get(k) for k in expected} == expected
    # Every option is recorded (under its own name or the guide's) unless it is not a
    # setting of the training (where files go, how the run is watched or interrupted).
    recorded = {example.CONFIG_NAMES.get(dest, dest) for dest in vars(args)}
    assert recorded - example.NOT_RECORDED <= set(config) | example.NOT_RECORDED
    missing = [d for d in vars(args) if d not in example.NOT_RECORDED
               and example.CONFIG_NAMES.get(d, d) not in config]  # fmt: skip
    assert not missing
    defaults = example.make_config(example.parse_args([]), "cpu", "fp32").to_dict()
    assert defaults["train_data"].endswith("train.bin") and defaults["val_data"].endswith("val.bin")


def test_every_option_of_the_example_has_help_with_its_default():
    import argparse

    parser = example_module().build_parser()
    text = parser.format_help()  # what --help prints (the -h line included)
    assert "show this help message and exit" in text and "--max-iters" in text
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings)
        assert action.help and action.help.strip(), f"{label}: no help"
        shown = parser._get_formatter()._get_help_string(action) % vars(action)
        flag = isinstance(action, argparse._StoreTrueAction)
        assert flag or "default" in shown, f"{label}: help does not say its default: {shown!r}"
        if not flag and action.default not in (None, [], ""):
            assert str(action.default) in shown, (label, shown)
        spellings = [s for s in action.option_strings if s.startswith("--")]
        assert any("_" in s for s in spellings) or not any("-" in s[2:] for s in spellings), label
