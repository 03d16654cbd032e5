"""``runtime/tracker``: ExperimentTracker writes the guide's run document (every field, its
keys and types), counts optimizer steps, fills eval rows, refuses bad values and names, and
saves atomically."""

import json
import math

import pytest
from helpers import GUIDE_COLUMNS, by_numpy, made

from cs336_basics.experiment_log import (
    ExperimentConfig,
    ExperimentTracker,
    load_experiment_log,
)
from cs336_basics.store.layout import safe_name

GUIDE_FIELDS = [
    "experiment_name",
    "vocab_size",
    "context_length",
    "d_model",
    "num_heads",
    "d_ff",
    "num_layers",
    "rope_theta",
    "batch_size",
    "max_iters",
    "max_learning_rate",
    "min_learning_rate",
    "warmup_iters",
    "weight_decay",
    "grad_clip",
    "beta1",
    "beta2",
    "eps",
    "seed",
    "device",
    "optimizer_name",
]
TOP_KEYS = [
    "config",
    "start_time",
    "end_time",
    "duration_seconds",
    "best_train_loss",
    "best_val_loss",
    "final_train_loss",
    "final_val_loss",
    "metrics_history",
    "notes",
]


def test_config_has_every_guide_field_with_a_default():
    config = ExperimentConfig()
    for name in GUIDE_FIELDS:
        assert hasattr(config, name), name
    assert config.to_dict()["experiment_name"] == "default_experiment"


def test_config_keeps_unknown_hyperparameters(tmp_path):
    config = ExperimentConfig(experiment_name="ablation", norm="post", ffn_type="silu")
    assert config.norm == "post" and config.ffn_type == "silu"
    tracker = ExperimentTracker(config, log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.finish()
    loaded = load_experiment_log(tracker.path)
    assert loaded.config.norm == "post"
    assert loaded.config.ffn_type == "silu"
    assert loaded.config == config


def test_config_rejects_empty_name():
    with pytest.raises(ValueError, match="experiment_name"):
        ExperimentConfig(experiment_name="")


def test_document_has_the_guides_keys_and_types(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="doc"), log_dir=tmp_path)
    tracker.start()
    for i in range(3):
        tracker.log_metrics(
            iteration=i,
            train_loss=4.0 - i,
            learning_rate=1e-3,
            tokens_per_sec=10.0,
            iter_time_ms=2.0,
        )
        tracker.increment_gradient_step()
    tracker.log_eval(iteration=2, train_loss=2.0, val_loss=2.5)
    tracker.finish(notes="n")
    tracker.save()
    assert tracker.path.name.startswith("experiment_doc_") and tracker.path.suffix == ".json"
    doc = json.loads(tracker.path.read_text())
    for key in TOP_KEYS:
        assert key in doc, key
    for key in GUIDE_FIELDS:
        assert key in doc["config"]
    assert isinstance(doc["start_time"], str) and isinstance(doc["end_time"], str)
    assert isinstance(doc["duration_seconds"], float)
    assert doc["best_val_loss"] == 2.5 and doc["final_train_loss"] == 2.0
    assert doc["notes"] == "n"
    rows = doc["metrics_history"]
    assert len(rows) == 3
    for row in rows:
        for key in GUIDE_COLUMNS:
            assert key in row, key
        assert isinstance(row["iteration"], int) and isinstance(row["gradient_step"], int)
    assert rows[0]["gradient_step"] == 1  # the guide's example: iteration 0 -> step 1
    assert rows[0]["val_loss"] is None and rows[2]["val_loss"] == 2.5


def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="acc"), log_dir=tmp_path)
    for i in range(8):
        tracker.log_metrics(iteration=i, train_loss=1.0)
        if (i + 1) % 4 == 0:
            tracker.increment_gradient_step()
    steps = [row.gradient_step for row in tracker.log.metrics_history]
    assert steps == [1, 1, 1, 1, 2, 2, 2, 2]
    tracker.log_metrics(iteration=8, train_loss=1.0, gradient_step=40)
    assert tracker.log.metrics_history[-1].gradient_step == 40
    tracker.close()


def test_eval_fills_the_row_of_its_iteration(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="ev"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=3.0)
    tracker.log_metrics(iteration=1, train_loss=2.0)
    tracker.log_eval(iteration=1, train_loss=2.1, val_loss=2.2)
    tracker.log_eval(iteration=5, val_loss=1.9)  # no row yet: adds one
    tracker.log_metrics(iteration=5, train_loss=1.8)  # merges into the eval-only row
    history = tracker.log.metrics_history
    assert [r.iteration for r in history] == [0, 1, 5]
    assert history[1].val_loss == 2.2 and history[1].train_loss == 2.0
    assert history[1].extra == {"eval_train_loss": 2.1}
    assert history[2].train_loss == 1.8 and history[2].val_loss == 1.9
    assert tracker.log.superseded_history == []
    tracker.close()


def test_finish_without_arguments_computes_the_summary(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="sum"), log_dir=tmp_path)
    for i, loss in enumerate([3.0, 1.0, float("nan"), 2.0]):
        tracker.log_metrics(iteration=i, train_loss=loss)
    tracker.log_eval(iteration=1, val_loss=1.5)
    tracker.log_eval(iteration=3, val_loss=1.7)
    log = tracker.finish()
    assert log.best_train_loss == 1.0  # NaN ignored
    assert log.final_train_loss == 2.0
    assert log.best_val_loss == 1.5 and log.final_val_loss == 1.7
    assert log.duration_seconds is not None and log.duration_seconds >= 0
    assert log.status == "finished"


def test_tracker_starts_on_first_log_without_start(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="lazy"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    assert tracker.path is not None
    tracker.finish()
    assert tracker.path.exists()


def test_non_finite_values_round_trip_as_strict_json(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="div"), log_dir=tmp_path)
    tracker.log_metrics(
        iteration=0,
        train_loss=float("nan"),
        learning_rate=float("inf"),
        tokens_per_sec=-float("inf"),
    )
    tracker.finish()
    text = tracker.path.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    row = load_experiment_log(tracker.path).metrics_history[0]
    assert math.isnan(row.train_loss)
    assert row.learning_rate == math.inf and row.tokens_per_sec == -math.inf


@pytest.mark.parametrize(
    "value",
    [
        3,
        3.5,
        by_numpy("np.float32(2.5)"),
        by_numpy("np.float64(1.25)"),
        by_numpy("np.int64(4)"),
        by_numpy("np.array(2.0)"),
    ],
)
def test_numeric_values_are_accepted(tmp_path, value):
    value = made(value)
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="num"), log_dir=tmp_path)
    row = tracker.log_metrics(iteration=0, train_loss=value)
    assert row.train_loss == float(value) and type(row.train_loss) is float
    tracker.close()


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ("1.0", "str"),
        ([1.0], "list"),
        by_numpy("np.array([1.0, 2.0])", "ndarray"),
        (b"1", "bytes"),
    ],
)
def test_bad_values_raise_type_error_naming_argument_and_type(tmp_path, value, type_name):
    value = made(value)
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="bad"), log_dir=tmp_path)
    with pytest.raises(TypeError, match=f"train_loss.*{type_name}"):
        tracker.log_metrics(iteration=0, train_loss=value)
    tracker.close()


def test_none_iteration_and_string_iteration_rejected(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="bad"), log_dir=tmp_path)
    with pytest.raises(TypeError, match="iteration.*None"):
        tracker.log_metrics(iteration=None, train_loss=1.0)
    with pytest.raises(TypeError, match="iteration.*str"):
        tracker.log_metrics(iteration="3", train_loss=1.0)
    with pytest.raises(TypeError, match="val_loss.*str"):
        tracker.log_eval(iteration=0, val_loss="x")
    tracker.close()


@pytest.mark.parametrize(
    "name", ["a/b", "../../escape", "with space", "ünïcødé ✓", "x" * 300, "..", "/abs/path"]
)
def test_names_never_write_outside_log_dir(tmp_path, name):
    log_dir = tmp_path / "logs"
    tracker = ExperimentTracker(ExperimentConfig(experiment_name=name), log_dir=log_dir)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.finish()
    assert tracker.path.parent == log_dir
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    stem = tracker.path.stem
    assert [str(p) for p in written] == [f"logs/.{stem}.columns", f"logs/{stem}.json"]
    assert load_experiment_log(tracker.path).experiment_name == name
    assert "/" not in safe_name(name) and len(tracker.path.name) < 120


def test_same_name_same_second_gets_distinct_files(tmp_path):
    trackers = [
        ExperimentTracker(ExperimentConfig(experiment_name="twin"), log_dir=tmp_path).start()
        for _ in range(3)
    ]
    paths = {t.path for t in trackers}
    assert len(paths) == 3
    for t in trackers:
        t.log_metrics(iteration=0, train_loss=1.0)
        t.finish()
    assert len(list(tmp_path.glob("*.json"))) == 3


def test_non_rank_zero_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="r1"), log_dir=tmp_path)
    assert tracker.log_metrics(iteration=0, train_loss=1.0) is None
    tracker.finish()
    assert tracker.save() is None
    assert list(tmp_path.iterdir()) == []
    forced = ExperimentTracker(
        ExperimentConfig(experiment_name="r1"), log_dir=tmp_path, all_ranks=True
    )
    forced.log_metrics(iteration=0, train_loss=1.0)
    forced.finish()
    assert forced.path.exists()


def test_save_is_atomic_and_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="atomic"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.save(wait=True)
    before = tracker.path.read_bytes()
    tracker.log_metrics(iteration=1, train_loss=0.5)

    import cs336_basics.store.fileio as storage

    def exploding_replace(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(storage.os, "replace", exploding_replace)
    with pytest.raises(OSError, match="disk vanished"):
        tracker.save(wait=True)  # written in the background: wait=True reports the failure
    assert tracker.health()["save"] == "failed"
    monkeypatch.undo()
    assert tracker.path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    # Nothing is lost: the kept journal continues the old document.
    assert load_experiment_log(tracker.path).last_iteration == 1
    tracker.save(wait=True)
    assert tracker.health()["save"] == "ok"
    tracker.close()


@pytest.mark.parametrize("end", ["finish", "close"])
def test_logging_after_the_run_ended_says_how_to_continue(tmp_path, end):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="ended"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    getattr(tracker, end)()
    with pytest.raises(RuntimeError, match=r"log_metrics\(\).*resume="):
        tracker.log_metrics(iteration=1, train_loss=1.0)
    with pytest.raises(RuntimeError, match=r"log_eval\(\).*resume="):
        tracker.log_eval(iteration=1, val_loss=1.0)
    assert len(load_experiment_log(tracker.path).metrics_history) == 1
