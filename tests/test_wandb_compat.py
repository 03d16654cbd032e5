"""``import cs336_basics.wandb_compat as wandb``: scripts written for W&B, run unchanged.

The loops below call wandb the way nanoGPT's ``train.py`` and the Hugging Face ``Trainer``'s
``WandbCallback`` do (written out here: no transformers needed). The W&B mirror runs with the
real client, offline (tests/conftest.py), and is read back with wandb's own reader.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import warnings
from pathlib import Path

import pytest
import wandb_records
from helpers import requires

import cs336_basics.wandb_compat as wandb
from cs336_basics import ExperimentAnalyzer, load_experiment_log
from cs336_basics.wandb_compat import _objects, _setup


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_objects, "_warned", set())
    yield
    wandb.teardown()  # no run of one test leaks into the next


def _document(run: wandb.Run) -> dict:
    assert run.local_path is not None
    return json.loads(Path(run.local_path).read_text())


def nanogpt_loop(log_dir: Path, mode: str, iters: int = 60, eval_interval: int = 20) -> wandb.Run:
    """nanoGPT's train.py: config from globals, one wandb.log per eval, never finish()."""
    config = {"learning_rate": 6e-4, "min_lr": 6e-5, "n_layer": 2, "n_embd": 64, "block_size": 32}
    wandb.init(project="owt", name="gpt2-tiny", config=config, mode=mode, log_dir=log_dir)
    run = wandb.run
    for iter_num in range(iters + 1):
        if iter_num % eval_interval == 0:
            losses = {"train": 3.0 - iter_num / 100, "val": 3.1 - iter_num / 100}
            wandb.log(
                {
                    "iter": iter_num,
                    "train/loss": losses["train"],
                    "val/loss": losses["val"],
                    "lr": 6e-4 * (1 - iter_num / 100),
                    "mfu": 31.5,
                }
            )
    return run


def hf_trainer_loop(log_dir: Path, mode: str, steps: int = 30) -> wandb.Run:
    """The Trainer's WandbCallback: setup(), on_log() for train and eval, on_train_end()."""
    args = {"learning_rate": 5e-5, "per_device_train_batch_size": 8, "num_train_epochs": 3}
    run = wandb.init(project="hf", name="bert-tiny", group="sweep", job_type="train", mode=mode,
                     log_dir=log_dir, tags=["hf"])  # fmt: skip
    run.config.update(args, allow_val_change=True)
    run.config.update({"model/num_parameters": 4_400_000}, allow_val_change=True)
    run.define_metric("train/global_step")
    run.define_metric("*", step_metric="train/global_step", step_sync=True)
    for step in range(1, steps + 1):
        if step % 10 == 0:  # logging_steps
            run.log({"train/loss": 2.0 / step, "train/grad_norm": 1.5,
                     "train/learning_rate": 5e-5 * (1 - step / steps),
                     "train/epoch": step / 10, "train/global_step": step})  # fmt: skip
        if step % 15 == 0:  # eval_steps, an eval at a step with no train row too
            run.log({"eval/loss": 3.0 / step, "eval/runtime": 0.5, "eval/samples_per_second": 99.0,
                     "train/epoch": step / 10, "train/global_step": step})  # fmt: skip
    for key, value in {"train_runtime": 12.5, "train_loss": 0.4, "total_flos": 1e12}.items():
        run.summary[key] = value  # single-value scalars go to the summary
    run.log({"train/epoch": 3.0, "train/global_step": steps})
    return run


def test_nanogpt_loop_writes_the_guides_json_locally(tmp_path: Path) -> None:
    run = nanogpt_loop(tmp_path, mode="disabled")
    assert wandb.config.learning_rate == 6e-4 and wandb.config["n_layer"] == 2
    assert wandb.summary["train/loss"] == pytest.approx(2.4)
    wandb.finish()
    assert wandb.run is None
    log = load_experiment_log(run.local_path)
    assert log.status == "finished" and log.experiment_name == "gpt2-tiny"
    assert [r.iteration for r in log.metrics_history] == [0, 20, 40, 60]
    row = log.metrics_history[1]
    assert row.train_loss == pytest.approx(2.8) and row.val_loss == pytest.approx(2.9)
    assert row.learning_rate == pytest.approx(6e-4 * 0.8) and row.extra == {"mfu": 31.5}
    assert row.gradient_step == 21
    config = log.config
    assert config.max_learning_rate == 6e-4 and config.min_learning_rate == 6e-5
    assert (config.d_model, config.context_length) == (64, 32)
    assert config.num_layers == 2  # nanoGPT's n_layer, through pull's alias table
    assert log.best_val_loss == pytest.approx(2.5) and log.final_train_loss == pytest.approx(2.4)
    assert log.mirrors["wandb"]["status"] == "disabled" and log.mirrors["wandb"]["run_id"] == run.id
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    assert analyzer.get_best_experiment("val_loss")[0]


@requires("wandb")
def test_hf_trainer_callback_loop_with_the_real_wandb_mirror(tmp_path: Path) -> None:
    run = hf_trainer_loop(tmp_path, mode="offline")
    assert run.summary["train_runtime"] == 12.5 and run.summary["train/epoch"] == 3.0
    run.finish()
    log = load_experiment_log(run.local_path)
    rows = {r.iteration: r for r in log.metrics_history}
    assert sorted(rows) == [10, 15, 20, 30]
    assert log.superseded_history == []  # rows at one global step merged, never superseded
    assert rows[10].train_loss == pytest.approx(0.2) and rows[10].gradient_step == 10
    assert rows[10].learning_rate == pytest.approx(5e-5 * (1 - 10 / 30))
    assert rows[10].extra == {"train/grad_norm": 1.5, "train/epoch": 1.0}  # global_step: axis
    assert rows[15].train_loss is None and rows[15].val_loss == pytest.approx(0.2)
    assert rows[15].extra["eval/runtime"] == 0.5
    assert rows[30].val_loss == pytest.approx(0.1) and rows[30].train_loss == pytest.approx(2 / 30)
    assert rows[30].extra["train/epoch"] == 3.0
    assert log.config.max_learning_rate == 5e-5 and log.config.per_device_train_batch_size == 8
    mirror = log.mirrors["wandb"]
    assert mirror["status"] == "finished" and mirror["run_id"] == run.id
    # The real W&B run (offline): the script's config as given, this project's keys.
    record = wandb_records.run_record(mirror["sync_dir"])
    assert record["display_name"] == "bert-tiny"
    config = record["config"]["update"]
    assert config["learning_rate"] == 5e-5 and config["model/num_parameters"] == 4_400_000
    history = wandb_records.history(mirror["sync_dir"])
    train = [h for h in history if "train/loss" in h]
    assert [h["iteration"] for h in train] == [10, 20, 30]
    evals = {round(wandb_records.as_float(h["val/loss"]), 9) for h in history if "val/loss" in h}
    assert evals == {0.2, 0.1}  # a later row at a logged step may repeat its val/loss


def test_step_and_commit_semantics(tmp_path: Path) -> None:
    with wandb.init(project="p", name="steps", mode="disabled", log_dir=tmp_path) as run:
        run.log({"loss": 1.0}, commit=False)
        run.log({"lr": 0.1})  # one row at step 0
        run.log({"loss": 0.9}, step=5)  # pending at step 5
        run.log({"lr": 0.2}, step=5)
        run.log({"loss": 0.8}, step=7)  # step moved: step 5 committed
        run.log({"loss": 0.7}, step=8, commit=True)
        run.log({"loss": 5.0})  # step 9
        run.log({"loss": 0.6}, step=6)  # lower step: a restart, rows after it superseded
    log = load_experiment_log(run.local_path)
    assert [(r.iteration, r.train_loss, r.learning_rate) for r in log.metrics_history] == [
        (0, 1.0, 0.1),
        (5, 0.9, 0.2),
        (6, 0.6, None),
    ]
    assert [r.iteration for r in log.superseded_history] == [7, 8, 9]
    with pytest.raises(ValueError, match="step="):
        with wandb.init(mode="disabled", log_dir=tmp_path) as bad:
            bad.log({"loss": 1.0}, step=-1)


def test_unsupported_values_are_said_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = wandb.init(name="media", mode="disabled", log_dir=tmp_path)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="cs336_basics"):
        warnings.simplefilter("error")  # what a warnings-as-errors test setup does
        for i in range(3):
            run.log({"loss": 1.0 / (i + 1), "samples": wandb.Image(None), "note": "text",
                     "table": wandb.Table(columns=["a"]), "flag": True})  # fmt: skip
        artifact = wandb.Artifact("model", type="model")
        with artifact.new_file("weights.bin", mode="wb") as handle:  # the HF callback does this
            handle.write(b"\x00" * 8)
        run.log_artifact(artifact)
        wandb.watch(object())
    messages = [r.getMessage() for r in caplog.records if r.name == "cs336_basics"]
    assert len(messages) == 7, messages
    assert any("log(): 'samples' holds a Image" in m for m in messages)
    assert any("'note' holds a str" in m for m in messages)
    assert any("log_artifact()" in m for m in messages) and any("watch()" in m for m in messages)
    run.finish()
    log = load_experiment_log(run.local_path)
    assert [r.train_loss for r in log.metrics_history] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert all(r.extra is None for r in log.metrics_history)


def test_crash_in_with_block_then_resume_by_id(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with wandb.init(name="r", id="run123", mode="disabled", log_dir=tmp_path) as run:
            run.log({"iteration": 0, "loss": 2.0})
            run.log({"iteration": 1, "loss": 1.9})
            raise RuntimeError("boom")
    first = load_experiment_log(run.local_path)
    assert first.status == "unfinished"
    with wandb.init(
        name="r", id="run123", resume="must", mode="disabled", log_dir=tmp_path
    ) as again:
        again.log({"iteration": 2, "loss": 1.8})
    assert again.local_path == run.local_path
    log = load_experiment_log(run.local_path)
    assert [r.iteration for r in log.metrics_history] == [0, 1, 2] and log.status == "finished"
    with pytest.raises(ValueError, match="resume='must'"):
        wandb.init(id="nope", resume="must", mode="disabled", log_dir=tmp_path)


def test_init_api_surface(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    namespace = argparse.Namespace(lr=0.01, batch_size=4, out=Path("x"))
    with caplog.at_level(logging.WARNING, logger="cs336_basics"):
        run = wandb.init(config=namespace, settings=wandb.Settings(mode="disabled"),
                         log_dir=tmp_path, notes="first try", save_code=True,
                         anonymous=None)  # fmt: skip
    said = [r.getMessage() for r in caplog.records]
    assert any("save_code= has no local meaning" in m for m in said), said
    assert not any("anonymous" in m for m in said)  # Lightning always passes anonymous=None
    assert wandb.init() is run  # an active run is returned, as W&B does
    assert run.mode == "disabled" and run.name == run.id and Path(run.dir).is_dir()
    run.config.seed = 7
    run.define_metric("loss", summary="min")
    for value in (3.0, 1.0, 2.0):
        run.log({"loss": value})
    assert run.summary["loss"] == 1.0 and run.config.as_dict()["out"] == "x"
    second = wandb.init(reinit="create_new", mode="disabled", log_dir=tmp_path, name="second")
    assert wandb.run is second and run is not second
    second.finish()
    assert wandb.run is run
    run.finish(exit_code=0)
    log = load_experiment_log(run.local_path)
    assert (
        log.notes == "first try" and log.config.seed == 7 and log.config.max_learning_rate == 0.01
    )
    assert log.best_train_loss == 1.0
    with pytest.raises(TypeError, match="unexpected keyword"):
        wandb.init(projct="typo")
    with pytest.raises(RuntimeError, match="finished"):
        run.log({"loss": 1.0})


def test_wandb_missing_logs_once_and_runs_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_setup, "real_wandb_installed", lambda: False)
    monkeypatch.setattr(_setup, "_told_missing", False)
    with caplog.at_level(logging.WARNING, logger="cs336_basics"):
        for name in ("a", "b"):
            with wandb.init(name=name, mode="online", log_dir=tmp_path) as run:
                run.log({"loss": math.pi})
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "not installed" in caplog.records[0].message and len(caplog.records) == 1
    assert load_experiment_log(run.local_path).metrics_history[0].train_loss == math.pi


def test_a_run_left_open_is_finished_at_exit(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import cs336_basics.wandb_compat as wandb\n"
        f"wandb.init(name='open', mode='disabled', log_dir={str(tmp_path)!r})\n"
        "wandb.log({'loss': 1.0})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    (path,) = tmp_path.glob("*.json")
    assert load_experiment_log(path).status == "finished"


def test_a_resumed_run_goes_on_after_its_last_step(tmp_path: Path) -> None:
    run = wandb.init(name="again", id="resume7", mode="disabled", log_dir=tmp_path)
    for i in range(5):
        run.log({"loss": 2.0 - i / 10})
    run.finish(exit_code=1)  # crashed: unfinished, resumable
    run = wandb.init(name="again", id="resume7", resume="allow", mode="disabled", log_dir=tmp_path)
    for i in range(3):
        run.log({"loss": 1.0 - i / 10})
    run.finish()
    log = load_experiment_log(run.local_path)
    assert [r.iteration for r in log.metrics_history] == list(range(8))
    assert log.superseded_history == []
    assert log.metrics_history[5].train_loss == pytest.approx(1.0)


def test_rows_without_the_scripts_iteration_key_join_the_latest_iteration(tmp_path: Path) -> None:
    run = wandb.init(name="mixed", mode="disabled", log_dir=tmp_path)
    run.log({"iter": 1000, "train/loss": 1.5})
    run.log({"tokens_seen": 5.0})  # no "iter": W&B's own step here is 1
    run.log({"iter": 2000, "train/loss": 1.0})
    run.log({"tokens_seen": 6.0})
    run.finish()
    log = load_experiment_log(run.local_path)
    assert [r.iteration for r in log.metrics_history] == [1000, 2000]
    assert log.superseded_history == []
    assert [r.extra["tokens_seen"] for r in log.metrics_history] == [5.0, 6.0]
    assert log.final_train_loss == 1.0


def test_values_real_wandb_accepts_are_accepted(tmp_path: Path) -> None:
    run = wandb.init(
        name="odd", mode="disabled", log_dir=tmp_path, config={"batch_size": "auto", "lr": "3e-4"}
    )
    run.define_metric("acc", summary="copy")
    run.log({"loss": 1.0, "self": 2.0, "tokens": 10**400, "acc": 0.5})
    assert run.summary["acc"] == 0.5
    run.finish()
    log = load_experiment_log(run.local_path)  # readable: no text in a numeric field
    assert log.config.extra["wandb.batch_size"] == "auto" and log.config.batch_size is None
    assert log.config.extra["wandb.lr"] == "3e-4"
    row = log.metrics_history[0]
    assert row.extra["self"] == 2.0 and row.extra["tokens"] == math.inf


def test_config_before_init_is_refused_as_wandb_does() -> None:
    from cs336_basics import UsageError

    with pytest.raises(UsageError, match=r"after wandb.init\(\)"):
        wandb.config.update({"lr": 0.1})
    with pytest.raises(UsageError, match="'lr'"):
        wandb.config.lr = 0.1
