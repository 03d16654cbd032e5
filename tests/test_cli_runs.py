"""Every number the command line shows is true: a run killed at any point shows the best and
last losses of its history (marked as not finished) in list, show, compare, best and the
report, the same numbers everywhere; one run is named by a glob too."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from helpers import run_simulated
from killed_runs import killed_runs

from cs336_basics.cli import main
from cs336_basics.core.text import fmt
from cs336_basics.experiment_analysis import ExperimentAnalyzer
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker

LOSSES = ("best_train_loss", "best_val_loss", "final_train_loss", "final_val_loss")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expected_losses(history) -> dict[str, float | None]:
    """Best (smallest finite) and last value of each loss, read from the rows one by one."""
    out: dict[str, float | None] = {}
    for name in ("train_loss", "val_loss"):
        values = [getattr(r, name) for r in history if getattr(r, name) is not None]
        finite = [v for v in values if math.isfinite(v)]
        out[f"best_{name}"] = min(finite) if finite else None
        out[f"final_{name}"] = values[-1] if values else None
    return out


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    log_dir = tmp_path_factory.mktemp("killed") / "logs"
    log_dir.mkdir()
    names = killed_runs(log_dir, count=4, seed=20)
    run_simulated(log_dir, "finished_run", iters=30)
    return log_dir, names


def test_killed_runs_show_the_same_best_and_last_losses_everywhere(killed, tmp_path, capsys):
    log_dir, names = killed
    analyzer = ExperimentAnalyzer(log_dir)
    analyzer.load_all(quiet=True)
    expected = {}
    for name in [*names, "finished_run"]:
        log = analyzer.get(name)
        assert log.status == ("finished" if name == "finished_run" else "unfinished")
        truth = expected_losses(log.metrics_history)
        assert all(v is not None for v in truth.values()), (name, truth)
        expected[name] = truth

    code, out, err = run(capsys, "list", "--json", "--log-dir", str(log_dir))
    assert code == 0, err
    listed = {r["run"]: r for r in json.loads(out)}
    for name, truth in expected.items():
        assert listed[name]["best_val_loss"] == truth["best_val_loss"], name
        assert {k: listed[name][k] for k in LOSSES} == truth, name
        assert listed[name]["from_history"] == (name != "finished_run")
        assert listed[name]["status"] == ("finished" if name == "finished_run" else "unfinished")
        results = analyzer.get(name).results()  # the one place these are computed
        assert {k: getattr(results, k) for k in LOSSES} == truth

    code, out, err = run(capsys, "compare", "--json", "--log-dir", str(log_dir))
    assert code == 0, err
    compared = {r["experiment"]: r for r in json.loads(out)}
    for name, truth in expected.items():
        row = compared[name]
        assert [row["best_train"], row["best_val"], row["final_train"], row["final_val"]] == [
            truth[k] for k in LOSSES
        ]

    for name, truth in expected.items():
        code, out, err = run(capsys, "show", name, "--json", "--log-dir", str(log_dir))
        assert code == 0, err
        shown = json.loads(out)
        assert {k: shown["summary"][k] for k in LOSSES} == truth
        assert {k: shown["results"][k] for k in LOSSES} == truth
        code, out, err = run(capsys, "show", name, "--log-dir", str(log_dir))
        marked = " (so far)" if name != "finished_run" else ""
        assert f"best val loss:    {fmt(truth['best_val_loss'])}{marked}\n" in out
        assert f"best train loss:  {fmt(truth['best_train_loss'])}{marked}\n" in out
        last = "last" if marked else "final"
        for kind in ("val", "train"):
            value = re.escape(f"{fmt(truth[f'final_{kind}_loss'])}{marked}")
            assert re.search(rf"\n  {last} {kind} loss: +{value}\n", out), (kind, out)

    code, out, err = run(capsys, "list", "--log-dir", str(log_dir))
    for name, truth in expected.items():
        line = next(x for x in out.splitlines() if x.startswith(name + " "))
        cells = line.split()
        assert cells[4:7] == [
            fmt(truth["best_val_loss"]),
            fmt(truth["final_val_loss"]),
            fmt(truth["best_train_loss"]),
        ], line

    code, out, err = run(capsys, "best", "--json", "--log-dir", str(log_dir))
    winner = min(expected, key=lambda n: expected[n]["best_val_loss"])
    assert json.loads(out)["run"] == winner
    assert json.loads(out)["value"] == expected[winner]["best_val_loss"]

    doc = tmp_path / "REPORT.md"
    code, out, err = run(
        capsys, "report", "--file", str(doc), "--no-images", "--log-dir", str(log_dir)
    )
    assert code == 0, err
    rows = {
        cells[1].strip(): [c.strip() for c in cells]
        for cells in (line.split("|") for line in doc.read_text().splitlines())
        if len(cells) > 9 and cells[1].strip() in expected
    }
    for name, truth in expected.items():
        status, best_val, last_val = rows[name][2], rows[name][7], rows[name][8]
        assert status == ("finished" if name == "finished_run" else "unfinished")
        assert (best_val, last_val) == (fmt(truth["best_val_loss"]), fmt(truth["final_val_loss"]))


def test_an_unfinished_run_shows_its_losses_so_far(tmp_path, capsys):
    """``--stop-at 39`` in small: a run closed before finish() (no summary in its file)."""
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="preempted"), log_dir=tmp_path)
    for i in range(40):
        tracker.log_metrics(iteration=i, train_loss=3.0 - i / 100)
        if i % 10 == 9:
            tracker.log_eval(iteration=i, val_loss=4.0 - i / 100)
    tracker.save()
    tracker.close()
    code, out, err = run(capsys, "list", "--json", "--log-dir", str(tmp_path))
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["status"] == "unfinished" and record["from_history"] is True
    assert record["best_train_loss"] == pytest.approx(2.61)
    assert record["final_val_loss"] == pytest.approx(3.61)
    code, out, err = run(capsys, "show", "preempted", "--json", "--log-dir", str(tmp_path))
    summary = json.loads(out)["summary"]
    assert summary["best_val_loss"] == pytest.approx(3.61) and summary["from_history"] is True
    code, out, err = run(capsys, "list", "--log-dir", str(tmp_path))
    assert "3.6100" in out and "2.6100" in out and "so far" in out


def test_show_takes_a_glob_that_matches_one_run(tmp_path, capsys):
    run_simulated(tmp_path, "wandb_ent_proj_abc", iters=3)
    run_simulated(tmp_path, "lr_1e-3", iters=3)
    run_simulated(tmp_path, "lr_3e-3", iters=4)
    code, out, err = run(capsys, "show", "wandb_*", "--json", "--log-dir", str(tmp_path))
    assert code == 0, err
    assert json.loads(out)["run"] == "wandb_ent_proj_abc"
    code, out, err = run(capsys, "show", "lr_*", "--log-dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert "'lr_*' matches 2 runs (lr_1e-3, lr_3e-3)" in err
    code, out, err = run(capsys, "export", "lr_3*", "-o", str(tmp_path / "x.csv"), "--log-dir",
                         str(tmp_path))  # fmt: skip
    assert code == 0 and len((tmp_path / "x.csv").read_text().splitlines()) == 5
    code, out, err = run(capsys, "show", "zz*", "--log-dir", str(tmp_path))
    assert code == 2 and "no experiment matches 'zz*'" in err
