"""``cs336-exp diff A B``: hyperparameters, code, data, environment and results side by side
(text, ``--md`` for the experiment log, ``--json``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cs336_basics import ExperimentConfig, ExperimentTracker
from cs336_basics.cli import main
from cs336_basics.runtime import provenance


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run([*command, *args], capture_output=True, text=True, check=True).stdout


def train(logs: Path, name: str, data: Path, lr: float, steps: int) -> ExperimentTracker:
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name=name, max_learning_rate=lr),
        log_dir=logs,
        data_files={"train": data},
        provenance=True,
        tags=["sweep"],
    )
    for i in range(steps):
        tracker.log_metrics(iteration=i, train_loss=3.0 - lr * 100 * i)
        tracker.increment_gradient_step()
    tracker.log_eval(iteration=steps - 1, val_loss=3.0 - lr * 100 * steps)
    tracker.finish()
    return tracker


@pytest.fixture
def two_runs(tmp_path: Path, monkeypatch) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "model.py").write_text("WIDTH = 64\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    monkeypatch.setattr(provenance, "code_folder", lambda: repo)
    data = tmp_path / "train.bin"
    data.write_bytes(b"a" * 1000)
    logs = tmp_path / "logs"
    train(logs, "base", data, 1e-3, 10)
    (repo / "model.py").write_text("WIDTH = 128\n")  # the code changed (uncommitted) ...
    data.write_bytes(b"b" * 1000)  # ... and so did the data
    train(logs, "wider", data, 3e-3, 12)
    ExperimentTracker(ExperimentConfig(experiment_name="bare"), log_dir=logs).finish()
    return logs


def test_diff_shows_what_changed(two_runs: Path, capsys) -> None:
    assert main(["diff", "base", "wider", "--log-dir", str(two_runs)]) == 0
    out = capsys.readouterr().out
    for section in ("hyperparameters:", "code:", "data:", "environment:", "results:"):
        assert section in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["max_learning_rate"].split()[1:4] == ["0.001", "0.003", "*"]
    assert lines["dirty"].split()[1:4] == ["no", "yes", "*"]
    assert lines["iterations"].split()[1:4] == ["10", "12", "*"]
    assert "train" in out and "fingerprint" in out
    assert "experiment_name" in out and "seed" not in out  # only what differs ...
    assert "the same)" in out  # ... and how many are the same
    assert main(["diff", "base", "wider", "--all", "--log-dir", str(two_runs)]) == 0
    assert "seed" in capsys.readouterr().out


def test_diff_md_and_json(two_runs: Path, capsys) -> None:
    assert main(["diff", "base", "wider", "--md", "--log-dir", str(two_runs)]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0] == "| | base | wider |" and table[1] == "|---|---|---|"
    assert all(line.startswith("|") and line.endswith("|") for line in table)
    assert "| max_learning_rate **≠** | 0.001 | 0.003 |" in table
    assert main(["diff", "base", "wider", "--json", "--log-dir", str(two_runs)]) == 0
    data = json.loads(capsys.readouterr().out)
    sections = {s["section"]: s for s in data["sections"]}
    assert list(sections) == ["run", "hyperparameters", "code", "data", "environment", "results"]
    code = {r["field"]: r for r in sections["code"]["rows"]}
    assert code["dirty"]["a"] is False and code["dirty"]["b"] is True
    assert code["diff file"]["b"].endswith(".diff")
    data_rows = {r["field"]: r for r in sections["data"]["rows"]}
    assert data_rows["train fingerprint"]["same"] is False
    results = {r["field"]: r for r in sections["results"]["rows"]}
    assert results["best_val_loss"]["a"] == pytest.approx(2.0)
    assert results["status"]["same"] is True


def test_a_run_without_provenance_says_so(two_runs: Path, capsys) -> None:
    assert main(["diff", "base", "bare", "--log-dir", str(two_runs)]) == 0
    out = capsys.readouterr().out
    assert "not recorded" in out and "provenance not recorded for" in out
    assert main(["diff", "base", "nope", "--log-dir", str(two_runs)]) == 2
    err = capsys.readouterr().err
    assert "no experiment 'nope'" in err and len(err.strip().splitlines()) == 1
