"""One bad file never breaks a directory: decoding checks every field and names it.

Each case takes a good run's JSON document, breaks one field, and checks that loading raises
``LogFormatError`` naming the file, the field and the value, that the analyzer skips and
reports the file, and that the command line keeps working for the other runs.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import expect_log, need, run_simulated

from cs336_basics.cli import main
from cs336_basics.core.errors import LogFormatError
from cs336_basics.experiment_analysis import ExperimentAnalyzer
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker, load_experiment_log
from cs336_basics.store import codec
from cs336_basics.store.codec import FORMAT_VERSION


def _row(doc: dict[str, Any], index: int, **changes: Any) -> None:
    doc["metrics_history"][index].update(changes)


def _set(key: str, value: Any):
    return lambda doc: doc.__setitem__(key, value)


def _config(key: str, value: Any):
    return lambda doc: doc["config"].__setitem__(key, value)


def _foreign_row(doc: dict[str, Any]) -> None:
    # A row with a key this package does not write takes the slow path.
    doc["metrics_history"][2] = {
        "iteration": 2,
        "gradient_step": 3,
        "wallclock_time": 0.5,
        "loss": 3.0,
        "extra": "oops",
    }


def _marker_then_bad(doc: dict[str, Any]) -> None:
    # A NaN marker anywhere sends every row through the marker-aware path.
    _row(doc, 1, val_loss="NaN")
    _row(doc, 3, train_loss="abc")


BREAKAGES = {
    "string loss": (
        lambda d: _row(d, 3, train_loss="abc"),
        r"metrics_history\[3\]\.train_loss: expected a number or null, got 'abc'",
    ),
    "string loss after a marker": (
        _marker_then_bad,
        r"metrics_history\[3\]\.train_loss: expected a number or null, got 'abc'",
    ),
    "float iteration": (
        lambda d: _row(d, 4, iteration=4.5),
        r"metrics_history\[4\]\.iteration: expected an integer, got 4\.5",
    ),
    "string iteration": (
        lambda d: _row(d, 0, iteration="0"),
        r"metrics_history\[0\]\.iteration: expected an integer, got '0'",
    ),
    "null gradient step": (
        lambda d: _row(d, 2, gradient_step=None),
        r"metrics_history\[2\]\.gradient_step: expected an integer, got None",
    ),
    "null wallclock": (
        lambda d: _row(d, 2, wallclock_time=None),
        r"metrics_history\[2\]\.wallclock_time: expected a number, got None",
    ),
    "bool learning rate": (
        lambda d: _row(d, 1, learning_rate=True),
        r"metrics_history\[1\]\.learning_rate: expected a number or null, got True",
    ),
    "list tokens_per_sec": (
        lambda d: _row(d, 1, tokens_per_sec=[1, 2]),
        r"metrics_history\[1\]\.tokens_per_sec: expected a number or null, got \[1, 2\]",
    ),
    "string extra": (
        lambda d: _row(d, 3, extra="oops"),
        r"metrics_history\[3\]\.extra: expected an object or null, got 'oops'",
    ),
    "list extra": (
        lambda d: _row(d, 3, extra=[1]),
        r"metrics_history\[3\]\.extra: expected an object or null, got \[1\]",
    ),
    "string extra metric": (
        lambda d: _row(d, 3, extra={"grad_norm": "big"}),
        r"metrics_history\[3\]\.extra\.grad_norm: expected a number or null, got 'big'",
    ),
    "foreign row, string extra": (
        _foreign_row,
        r"metrics_history\[2\]\.extra: expected an object or null, got 'oops'",
    ),
    "row not an object": (
        lambda d: d["metrics_history"].__setitem__(1, 7),
        r"metrics_history\[1\]: expected a JSON object, got int",
    ),
    "history not a list": (
        _set("metrics_history", {"a": 1}),
        r"metrics_history: expected a list, got dict",
    ),
    "bad superseded row": (
        _set("superseded_history", [{"iteration": "x", "gradient_step": 1, "wallclock_time": 0}]),
        r"superseded_history\[0\]\.iteration: expected an integer, got 'x'",
    ),
    "mirrors of strings": (
        _set("mirrors", {"wandb": "oops"}),
        r"mirrors\.wandb: expected an object, got 'oops'",
    ),
    "mirrors a list": (
        _set("mirrors", [{"run_id": "a"}]),
        r"mirrors: expected an object of objects .*got \[\{'run_id': 'a'\}\]",
    ),
    "numeric notes": (_set("notes", 5), r"notes: expected a string or null, got 5"),
    "numeric start_time": (
        _set("start_time", 20250101),
        r"start_time: expected a string or null, got 20250101",
    ),
    "numeric run_id": (_set("run_id", 3), r"run_id: expected a string or null, got 3"),
    "unknown status": (
        _set("status", "exploded"),
        r"status: expected one of running, finished, unfinished, got 'exploded'",
    ),
    "string summary": (
        _set("best_val_loss", "low"),
        r"best_val_loss: expected a number or null, got 'low'",
    ),
    "bool summary": (
        _set("final_train_loss", False),
        r"final_train_loss: expected a number or null, got False",
    ),
    "string save_id": (_set("save_id", "x"), r"save_id: expected an integer or null, got 'x'"),
    "string format_version": (
        _set("format_version", "2"),
        r"format_version: expected an integer or null, got '2'",
    ),
    "config changes not a list": (
        _set("config_changes", "x"),
        r"config_changes: expected a list, got 'x'",
    ),
    "string batch size": (
        _config("batch_size", "abc"),
        r"config\.batch_size: expected a finite number or null, got 'abc'",
    ),
    "nan context length": (
        _config("context_length", "NaN"),
        r"config\.context_length: expected a finite number or null, got nan",
    ),
    "config not an object": (_set("config", "x"), r"bad config: config: expected a JSON object"),
    "config key named extra": (_config("extra", 5), r"bad config: .*'extra'"),
}


@pytest.fixture(scope="module")
def good_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tracker = run_simulated(tmp_path_factory.mktemp("good"), "template", iters=12, eval_every=4)
    return json.loads(tracker.path.read_text())


def broken_copy(good_doc: dict[str, Any], folder: Path, case: str) -> Path:
    doc = json.loads(json.dumps(good_doc))
    BREAKAGES[case][0](doc)
    path = folder / f"experiment_broken_{case.replace(' ', '_')}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_bad_field_is_named_with_the_file(good_doc, tmp_path, case):
    path = broken_copy(good_doc, tmp_path, case)
    with pytest.raises(LogFormatError) as info:
        load_experiment_log(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert re.search(BREAKAGES[case][1], message), message


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_analyzer_skips_and_reports_each_bad_file(good_doc, tmp_path, case, capsys):
    run_simulated(tmp_path, "fine", iters=5)
    bad = broken_copy(good_doc, tmp_path, case)
    analyzer = ExperimentAnalyzer(tmp_path)
    logs = analyzer.load_all(quiet=True)
    assert list(logs) == ["fine"]
    assert len(analyzer.problems) == 1 and str(bad) in analyzer.problems[0]
    assert capsys.readouterr().err == ""  # quiet
    analyzer.load_all()
    assert str(bad) in capsys.readouterr().err


def test_every_bad_file_is_reported_once(good_doc, tmp_path):
    run_simulated(tmp_path, "fine", iters=5)
    bad = {broken_copy(good_doc, tmp_path, case) for case in list(BREAKAGES)[:6]}
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    assert list(analyzer.logs) == ["fine"]
    assert sorted(p.split(": ")[0].removeprefix("skipped ") for p in analyzer.problems) == sorted(
        map(str, bad)
    )


def test_a_bad_value_in_an_escaped_marker_still_reads_as_nan(good_doc, tmp_path):
    """A marker written with escapes hides from the byte scan; it still loads as NaN."""
    doc = json.loads(json.dumps(good_doc))
    doc["metrics_history"][3]["train_loss"] = "__MARK__"
    path = tmp_path / "escaped.json"
    text = json.dumps(doc).replace('"__MARK__"', '"\\u004e\\u0061\\u004e"')
    assert "N" not in text and "I" not in text
    path.write_text(text)
    assert math.isnan(load_experiment_log(path).metrics_history[3].train_loss)


def test_nan_in_an_extra_metric_round_trips(tmp_path):
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="x"), log_dir=tmp_path)
    tracker.log_metrics(iteration=0, train_loss=1.0, grad_norm=float("nan"))
    tracker.log_metrics(iteration=1, train_loss=1.0, grad_norm=float("inf"))
    tracker.finish()
    history = load_experiment_log(tracker.path).metrics_history
    assert math.isnan(history[0].extra["grad_norm"])
    assert history[1].extra["grad_norm"] == math.inf


def test_unexpected_errors_while_decoding_become_log_format_errors(good_doc, monkeypatch):
    def broken(**kwargs):
        raise AttributeError("simulated")

    monkeypatch.setattr(codec, "ExperimentLog", broken)
    with pytest.raises(LogFormatError, match="x.json: .*simulated") as info:
        codec.document_to_log(good_doc, "x.json")
    assert isinstance(info.value.__cause__, AttributeError)


def test_newer_format_version_loads_with_a_warning(good_doc, tmp_path, caplog):
    doc = json.loads(json.dumps(good_doc))
    doc["format_version"] = FORMAT_VERSION + 1
    doc["some_future_key"] = {"a": 1}
    path = tmp_path / "future.json"
    path.write_text(json.dumps(doc))
    with expect_log(caplog, r"future\.json.*newer version"):
        log = load_experiment_log(path)
    assert len(log.metrics_history) == 12


def test_current_format_version_loads_silently(good_doc, tmp_path, caplog):
    path = tmp_path / "now.json"
    path.write_text(json.dumps(good_doc))
    caplog.set_level(logging.WARNING, logger="cs336_basics")
    load_experiment_log(path)
    assert not [r for r in caplog.records if r.name.startswith("cs336_basics")]


def test_notes_mentioning_nan_do_not_change_the_values(good_doc, tmp_path):
    doc = json.loads(json.dumps(good_doc))
    doc["notes"] = 'Infinity and "NaN" in prose'
    path = tmp_path / "notes.json"
    path.write_text(json.dumps(doc))
    log = load_experiment_log(path)
    assert log.notes == doc["notes"]
    assert [r.train_loss for r in log.metrics_history] == [
        r["train_loss"] for r in good_doc["metrics_history"]
    ]


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def mixed_dir(good_doc, tmp_path) -> Path:
    log_dir = tmp_path / "logs"
    run_simulated(log_dir, "good_a", iters=20, lr=1e-3)
    run_simulated(log_dir, "good_b", iters=20, lr=3e-3)
    for case in ("string loss", "mirrors of strings", "string extra", "unknown status"):
        broken_copy(good_doc, log_dir, case)
    return log_dir


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["list", "--json"],
        ["compare", "--json"],
        ["best", "--json"],
        ["show", "good_a"],
        ["plot", "*", "-o", "{tmp}/curves.png"],
        ["plot", "*", "--metric", "train_loss", "-o", "{tmp}/curves.png"],
        ["export", "good_b", "-o", "{tmp}/b.csv"],
    ],
    ids=" ".join,
)
def test_commands_work_beside_bad_files(mixed_dir, tmp_path, capsys, args):
    need("matplotlib")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main([*argv, "--log-dir", str(mixed_dir)]) == 0
    captured = capsys.readouterr()
    if argv == ["list", "--json"]:
        assert {r["run"] for r in json.loads(captured.out)} == {"good_a", "good_b"}
    if "--json" not in argv:  # --json loads quietly
        for name in ("string_loss", "mirrors_of_strings", "string_extra", "unknown_status"):
            assert name in captured.err  # each bad file is named on stderr


@pytest.mark.parametrize("case", ["mirrors of strings", "mirrors a list", "string loss"])
def test_show_of_a_bad_file_is_one_line(good_doc, tmp_path, capsys, case):
    path = broken_copy(good_doc, tmp_path, case)
    assert main(["show", str(path), "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cs336-exp: error: ") and err.count("\n") == 1, err
    assert str(path) in err
