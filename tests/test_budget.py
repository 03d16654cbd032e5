"""analysis.budget: runs' values at exactly a budget, against hand-built runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import need

from cs336_basics import ExperimentAnalyzer, ExperimentConfig, ExperimentLog, MetricsSnapshot
from cs336_basics.analysis.budget import parse_budget, value_at, values_at
from cs336_basics.core.errors import UsageError


def hand_run(
    name: str, rows: list[tuple[int, int, float, float | None, float | None]], **config: object
) -> ExperimentLog:
    """(iteration, gradient_step, wallclock, train_loss, val_loss) per row."""
    return ExperimentLog(
        config=ExperimentConfig.only(experiment_name=name, **config),
        run_id=name,
        metrics_history=[
            MetricsSnapshot(i, g, w, train_loss=t, val_loss=v) for i, g, w, t, v in rows
        ],
    )


# 64 tokens per step (batch 4 x context 16): step g has seen 64 g tokens.
RUN = hand_run(
    "a",
    [
        (0, 1, 1.0, 5.0, None),
        (1, 2, 2.0, 4.0, None),
        (2, 3, 3.0, 3.5, 3.9),
        (3, 4, 4.0, 3.0, None),
        (5, 6, 6.0, 2.5, 2.8),
    ],
    batch_size=4,
    context_length=16,
)


def test_exact_value_at_a_logged_row() -> None:
    found = value_at(RUN, "gradient_step", 3, "train_loss")
    assert (found.value, found.at, found.before, found.iteration, found.how) == (
        3.5,
        3.0,
        0.0,
        2,
        "exact",
    )
    assert found.reached and not found.interpolated
    assert value_at(RUN, "tokens", 3 * 64, "val_loss").value == 3.9


def test_last_value_before_and_how_far() -> None:
    found = value_at(RUN, "tokens", 5 * 64, "train_loss")  # between steps 4 and 6
    assert (found.value, found.at, found.before, found.how) == (3.0, 256.0, 64.0, "before")
    val = value_at(RUN, "gradient_step", 5, "val_loss")  # val logged at steps 3 and 6
    assert (val.value, val.at, val.before, val.iteration) == (3.9, 3.0, 2.0, 2)
    wall = value_at(RUN, "wallclock", 4.5, "train_loss")
    assert (wall.value, wall.before) == (3.0, 0.5)
    assert value_at(RUN, "iteration", 4, "train_loss").value == 3.0


def test_interpolation_only_when_asked_and_labelled() -> None:
    plain = value_at(RUN, "gradient_step", 5, "train_loss")
    assert plain.value == 3.0 and not plain.interpolated
    line = value_at(RUN, "gradient_step", 5, "train_loss", interpolate=True)
    assert line.value == pytest.approx(2.75) and line.interpolated and line.how == "interpolated"
    assert (line.at, line.before, line.iteration) == (5.0, 0.0, None)
    val = value_at(RUN, "gradient_step", 4, "val_loss", interpolate=True)
    assert val.value == pytest.approx(3.9 + (2.8 - 3.9) / 3)
    exact = value_at(RUN, "gradient_step", 6, "train_loss", interpolate=True)
    assert exact.how == "exact" and exact.value == 2.5


def test_boundaries() -> None:
    first = value_at(RUN, "gradient_step", 1, "train_loss")
    assert (first.value, first.how) == (5.0, "exact")
    last = value_at(RUN, "gradient_step", 6, "train_loss")
    assert (last.value, last.how) == (2.5, "exact")
    early = value_at(RUN, "gradient_step", 0.5, "train_loss")
    assert (early.value, early.how, early.reached) == (None, "none_before", True)
    no_val = value_at(RUN, "gradient_step", 2, "val_loss")  # val starts at step 3
    assert no_val.how == "none_before" and no_val.value is None
    assert value_at(RUN, "gradient_step", 3, "grad_norm").how == "no_values"


def test_runs_that_stop_short_say_so() -> None:
    found = value_at(RUN, "gradient_step", 7, "train_loss")
    assert (found.value, found.reached, found.how, found.at) == (None, False, "not_reached", 6.0)
    assert value_at(RUN, "tokens", 2e8, "val_loss").how == "not_reached"
    assert value_at(RUN, "gradient_step", 7, "train_loss", interpolate=True).value is None


def test_unknown_tokens_per_step() -> None:
    run = hand_run("b", [(0, 1, 1.0, 5.0, None)])
    found = value_at(run, "tokens", 64, "train_loss")
    assert (found.value, found.how, found.reached) == (None, "no_axis", False)
    assert value_at(RUN, "flops", 1e9, "train_loss").how == "no_axis"  # no FLOPs per token
    run = hand_run(
        "c", [(0, 1, 1.0, 5.0, None), (1, 2, 2.0, 4.0, None)], batch_size=1, context_length=10
    )
    run.compute = {"flops_per_token": 100.0}
    found = value_at(run, "flops", 1500, "train_loss")  # 1000 FLOPs a step
    assert (found.value, found.at, found.before) == (5.0, 1000.0, 500.0)


def test_nan_rows() -> None:
    run = hand_run(
        "nan",
        [(0, 1, 1.0, 4.0, None), (1, 2, 2.0, math.nan, None), (2, 3, 3.0, math.inf, 3.0)],
    )
    diverged = value_at(run, "gradient_step", 2, "train_loss")
    assert math.isnan(diverged.value) and diverged.how == "exact"
    assert value_at(run, "gradient_step", 2.5, "train_loss", interpolate=True).how == "before"
    assert math.isinf(value_at(run, "gradient_step", 3, "train_loss").value)
    assert value_at(run, "gradient_step", 3, "val_loss").value == 3.0


def test_analyzer_forms(tmp_path: Path) -> None:
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.add(RUN)
    short = hand_run(
        "short", [(0, 1, 1.0, 6.0, None), (1, 2, 2.0, 5.5, 5.9)], batch_size=4, context_length=16
    )
    analyzer.add(short)
    found = analyzer.values_at("tokens", 4 * 64)
    assert set(found) == {"a", "short"}
    assert found["a"]["train_loss"].value == 3.0 and found["a"]["val_loss"].value == 3.9
    assert found["short"]["train_loss"].how == "not_reached"
    assert values_at(RUN, "tokens", 4 * 64, "val_loss")["val_loss"].before == 64.0
    headers, rows = analyzer.budget_rows("tokens", 4 * 64)
    assert headers == [
        "experiment",
        "status",
        "train_loss",
        "train_loss_before",
        "val_loss",
        "val_loss_before",
        "note",
    ]
    assert rows[0][:6] == ["a", "running", 3.0, None, 3.9, 64.0]
    assert rows[1][-1] == "not reached (got to 128)"
    need("pandas")
    frame = analyzer.values_at_frame("gradient_step", 5, ["train_loss"], interpolate=True)
    assert list(frame["run"]) == ["a", "short"]
    assert frame["value"][0] == pytest.approx(2.75) and bool(frame["interpolated"][0])
    assert not frame["reached"][1]


def test_parse_budget() -> None:
    assert parse_budget("tokens=2e8") == ("tokens", 2e8)
    assert parse_budget("tokens=200M") == ("tokens", 2e8)
    assert parse_budget("gradient_step=5k") == ("gradient_step", 5000.0)
    assert parse_budget("wallclock=2h") == ("wallclock", 7200.0)
    assert parse_budget("wallclock_time=90m") == ("wallclock", 5400.0)
    assert parse_budget("flops=1.5e18") == ("flops", 1.5e18)
    for bad in ("tokens", "speed=3", "tokens=abc", "wallclock=3y", "tokens=inf"):
        with pytest.raises(UsageError):
            parse_budget(bad)


def test_cli_compare_at_a_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from cs336_basics.cli import main
    from cs336_basics.store.document import write_document

    short = hand_run("short", [(0, 1, 1.0, 6.0, None), (1, 2, 2.0, 5.5, 5.9)])
    for log in (RUN, short):
        write_document(tmp_path / f"{log.run_id}.json", log, 1)
    assert main(["compare", "--at", "gradient_step=5", "--log-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    a_row = next(line for line in out.splitlines() if line.startswith("a "))
    assert "3.0000" in a_row and "3.9000" in a_row  # train at step 4, val at step 3
    short_row = next(line for line in out.splitlines() if line.startswith("short"))
    assert "not reached" in short_row
    assert main(["compare", "--at", "gradient_step=5", "--json", "--log-dir", str(tmp_path)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["a"]["train_loss"]["value"] == 3.0 and found["a"]["train_loss"]["before"] == 1
    assert found["short"]["val_loss"]["reached"] is False
    assert main(["compare", "--at", "gradient_step=5", "--interpolate", "--json",
                 "--log-dir", str(tmp_path)]) == 0  # fmt: skip
    found = json.loads(capsys.readouterr().out)
    assert found["a"]["train_loss"]["value"] == pytest.approx(2.75)
    assert found["a"]["train_loss"]["interpolated"] is True
    assert main(["compare", "--at", "steps=5", "--log-dir", str(tmp_path)]) == 2
    assert "expected AXIS=NUMBER" in capsys.readouterr().err


def test_report_has_a_column_per_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cs336_basics.cli import main
    from cs336_basics.store.document import write_document

    short = hand_run("short", [(0, 1, 1.0, 6.0, None), (1, 2, 2.0, 5.5, 5.9)])
    for log in (RUN, short):
        write_document(tmp_path / f"{log.run_id}.json", log, 1)
    out = tmp_path / "log.md"
    argv = ["report", "--log-dir", str(tmp_path), "--file", str(out), "--no-images"]
    assert main([*argv, "--at", "gradient_step=5", "--at", "gradient_step=2"]) == 0
    lines = out.read_text().splitlines()
    header = next(line for line in lines if line.startswith("| run |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    first = cells.index("val / train loss at gradient_step=5")
    assert cells[first + 1] == "val / train loss at gradient_step=2" and cells[first - 1] == "MFU"
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| a ")}
    rows.update({line.split("|")[1].strip(): line for line in lines if line.startswith("| short")})
    a = [c.strip() for c in rows["a"].strip("|").split("|")]
    # val logged at steps 3 and 6: at 5 it is 3.9, 2 steps before; train 3.0 at step 4.
    assert a[first] == "3.9000 (-2) / 3.0000 (-1)" and a[first + 1] == "none before / 4.0000"
    short_cells = [c.strip() for c in rows["short"].strip("|").split("|")]
    assert short_cells[first] == "not reached / not reached" and short_cells[first - 1] == "-"
    assert main([*argv, "--at", "epochs=3"]) == 2
    assert "expected AXIS=NUMBER" in capsys.readouterr().err
    assert main([*argv, "--at", "tokens=1", "--html", str(tmp_path / "r.html")]) == 2
