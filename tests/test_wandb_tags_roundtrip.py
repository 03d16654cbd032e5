"""Tags, group and notes go local -> W&B (the real client, offline) -> local again, through
both ways back: ``pull`` (a fake GraphQL server fed with what the mirror recorded) and
``import`` (the offline ``.wandb`` file itself, read with wandb's own reader)."""

from __future__ import annotations

from pathlib import Path

import pytest
import wandb_records as wr
from fake_wandb import FakeRun
from helpers import requires
from test_wandb_pull import server  # noqa: F401 (the fake W&B server fixture)

from cs336_basics import ExperimentAnalyzer, ExperimentConfig, ExperimentTracker, import_wandb_runs
from cs336_basics.cli import main
from cs336_basics.wandb_adapter.pull import pull_runs

pytestmark = [pytest.mark.slow, requires("wandb")]

TAGS = ["ablation", "seed-1"]


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A local run with tags, a group and notes, mirrored to W&B offline."""
    local = tmp_path_factory.mktemp("local")
    config = ExperimentConfig(experiment_name="tagged", max_learning_rate=2e-3)
    tracker = ExperimentTracker(config, log_dir=local, sinks=["wandb"], tags=TAGS, group="seeds")
    for i in range(20):
        tracker.log_metrics(iteration=i, train_loss=3.0 - i / 10, learning_rate=2e-3)
        tracker.increment_gradient_step()
    tracker.log_eval(iteration=19, val_loss=1.5)
    log = tracker.finish(notes="why: a tagged run")
    return log, Path(log.mirrors["wandb"]["sync_dir"])


def test_the_mirror_sends_them_to_wandb(mirrored) -> None:
    log, sync_dir = mirrored
    record = wr.run_record(sync_dir)
    assert list(record.get("tags") or []) == TAGS
    assert record.get("run_group") == "seeds"


def test_import_reads_them_back(mirrored, tmp_path: Path, capsys) -> None:
    original, sync_dir = mirrored
    (imported,) = import_wandb_runs(sync_dir, save_dir=tmp_path, show_progress=False)
    assert (imported.tags, imported.group, imported.notes) == (TAGS, "seeds", original.notes)
    assert [r.train_loss for r in imported.metrics_history] == [
        r.train_loss for r in original.metrics_history
    ]
    # ... kept in the document: the filters find the imported run by them.
    d = ["--log-dir", str(tmp_path)]
    assert main(["list", "--json", "--tag", "seed-1", "--group", "seeds", *d]) == 0
    assert '"tagged"' in capsys.readouterr().out


def test_pull_reads_them_back(mirrored, server, tmp_path: Path) -> None:  # noqa: F811
    original, sync_dir = mirrored
    record = wr.run_record(sync_dir)  # what W&B got, as the fake server will answer it
    items = [r["history"]["item"] for r in wr.records(sync_dir) if r.get("type") == "history"]
    server.add(
        "proj",
        FakeRun(
            id=original.mirrors["wandb"]["run_id"],
            name="tagged",
            config=original.config.settings(),
            summary=wr.summary(sync_dir),
            history=items,
            notes=original.notes,
            tags=list(record.get("tags") or []),
            group=record.get("run_group"),
        ),
    )
    (pulled,) = pull_runs("ent/proj", save_dir=tmp_path)
    assert (pulled.tags, pulled.group, pulled.notes) == (TAGS, "seeds", original.notes)
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    assert list(analyzer.filter(tags=["ablation"], groups=["seeds"])) == ["tagged"]
