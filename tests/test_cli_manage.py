"""``cs336-exp tag``, ``note``, ``rename``, ``delete``, ``restore``: editing and removing runs
that nobody writes, under the run's lock, inside the log directory only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_simulated

from cs336_basics import ExperimentConfig, ExperimentTracker, load_experiment_log
from cs336_basics.cli import main
from cs336_basics.store.cache import read_cache
from cs336_basics.store.document import read_document
from cs336_basics.store.layout import RunFiles


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links as their target's path), by relative path."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            found[key] = path.read_bytes()
    return found


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    run_simulated(folder, "alpha", iters=30)
    run_simulated(folder, "beta", iters=30, lr=3e-3)
    return folder


def _run(folder: Path, name: str) -> Path:
    (path,) = [p for p in folder.glob("experiment_*.json") if f"_{name}_" in p.name]
    return path


def test_tag_adds_removes_sets_group_and_filters(logs: Path, capsys) -> None:
    alpha = _run(logs, "alpha")
    _, save_id = read_document(alpha)
    d = ("--log-dir", str(logs))
    assert cli(capsys, "tag", "alpha", "+ablation", "+draft", *d)[0] == 0
    code, out, _ = cli(capsys, "tag", "alpha", "-draft", "+lr-sweep", "--group", "seeds", *d)
    assert code == 0 and "ablation, lr-sweep; group seeds" in out
    log = load_experiment_log(alpha)
    assert (log.tags, log.group) == (["ablation", "lr-sweep"], "seeds")
    assert len(log.metrics_history) == 30
    # Written atomically with the next save id; the columnar cache describes the new file.
    cached = read_cache(alpha)
    assert cached is not None and cached.meta["tags"] == ["ablation", "lr-sweep"]
    assert cached.meta["save_id"] == save_id + 2 == read_document(alpha)[1]
    # Filters: list, compare, best see only the runs with the tag / of the group.
    assert cli(capsys, "tag", "beta", "+lr-sweep", *d)[0] == 0
    listed = json.loads(cli(capsys, "list", "--json", "--tag", "lr-sweep", *d)[1])
    assert sorted(r["run"] for r in listed) == ["alpha", "beta"]
    both = ("--tag", "lr-sweep", "--tag", "ablation")
    listed = json.loads(cli(capsys, "list", "--json", *both, *d)[1])
    assert [(r["run"], r["group"]) for r in listed] == [("alpha", "seeds")]
    compared = json.loads(cli(capsys, "compare", "--json", "--group", "seeds", *d)[1])
    assert [r["experiment"] for r in compared] == ["alpha"]
    assert "no runs" in cli(capsys, "list", "--group", "nope", *d)[1]
    # No change given: shows the tags; --no-group takes a run out of its group.
    assert "beta" not in cli(capsys, "tag", "alpha", *d)[1]
    assert cli(capsys, "tag", "alpha", "--no-group", *d)[0] == 0
    assert load_experiment_log(alpha).group is None


def test_note_and_rename_keep_the_run_id_and_files(logs: Path, capsys) -> None:
    d = ("--log-dir", str(logs))
    alpha = _run(logs, "alpha")
    names = sorted(p.name for p in logs.iterdir() if not p.name.endswith(".columns"))
    assert cli(capsys, "note", "alpha", "warmup 200 -> 500", *d)[0] == 0
    assert cli(capsys, "note", "alpha", "second thought", "--append", *d)[0] == 0
    assert cli(capsys, "note", "alpha", "--append", "third", *d)[0] == 0  # the flag first
    assert cli(capsys, "note", "alpha", *d)[1] == "warmup 200 -> 500\nsecond thought\nthird\n"
    for new in ("../../escaped/name", "/etc/passwd", "lr 1e-3 (again)"):
        code, out, _ = cli(capsys, "rename", str(alpha.stem), new, *d)
        assert code == 0 and "run id and files unchanged" in out
        log = load_experiment_log(alpha)
        assert log.experiment_name == new and log.run_id == alpha.stem
    assert sorted(p.name for p in logs.iterdir() if not p.name.endswith(".columns")) == names
    assert not (logs.parent / "escaped").exists()
    listed = json.loads(cli(capsys, "list", "--json", *d)[1])
    assert sorted(r["run"] for r in listed) == ["beta", "lr 1e-3 (again)"]
    assert load_experiment_log(alpha).notes == "warmup 200 -> 500\nsecond thought\nthird"


@pytest.mark.parametrize(
    "args, message",
    [
        (["tag", "nope", "+x"], "no experiment 'nope'"),
        (["tag", "alpha", "+a b"], "has a blank"),
        (["tag", "alpha", "+"], "is empty"),
        (["tag", "alpha", "+a,b"], "has a comma"),
        (["tag", "alpha", "+x", "-x"], "both added and removed"),
        (["tag", "+x"], "name at least one run"),
        (["note", "zzz*", "text"], "no experiment matches 'zzz*'"),
        (["note", "*", "text"], "matches 2 runs"),
        (["rename", "alpha", "  "], "expected a name"),
        (["delete", "../alpha"], "no experiment '../alpha'"),
        (["restore", "alpha"], "the trash of"),
        (["restore"], "--list"),
        (["diff", "alpha", "alpha"], "the same run"),
    ],
)
def test_bad_input_is_refused_in_one_line(logs: Path, capsys, args, message) -> None:
    before = snapshot(logs)
    code, _, err = cli(capsys, *args, "--log-dir", str(logs))
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(logs) == before


def test_a_live_run_is_refused_and_left_alone(logs: Path, capsys) -> None:
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="live"), log_dir=logs)
    tracker.start()
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.flush()
    before = snapshot(logs)
    d = ("--log-dir", str(logs))
    for args in (
        ["tag", "live", "+x"],
        ["note", "live", "text"],
        ["rename", "live", "other"],
        ["delete", "alpha", "live"],  # refused before anything moves
    ):
        code, _, err = cli(capsys, *args, *d)
        assert code == 2 and "live" in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(logs) == before
    tracker.finish()
    assert cli(capsys, "tag", "live", "+done", *d)[0] == 0


def test_a_killed_runs_journal_is_folded_into_its_document(tmp_path: Path, capsys) -> None:
    from killed_runs import killed_runs

    (name,) = killed_runs(tmp_path, count=1, seed=3)  # SIGKILL: document + journals left
    (journal,) = tmp_path.glob("*.jsonl")
    before = load_experiment_log(journal)
    assert cli(capsys, "tag", name, "+crashed", "--log-dir", str(tmp_path))[0] == 0
    files = RunFiles.of(journal)
    assert not files.journal.exists() and not files.kept_journals()
    log = load_experiment_log(files.document)
    assert log.tags == ["crashed"] and log.status == "unfinished"
    assert list(log.metrics_history) == list(before.metrics_history)


def test_delete_restore_and_purge(logs: Path, capsys) -> None:
    d = ("--log-dir", str(logs))
    alpha = _run(logs, "alpha")
    original = load_experiment_log(alpha)
    files = sorted(p.name for p in logs.iterdir() if alpha.stem in p.name)
    code, out, _ = cli(capsys, "delete", "alpha", *d)
    assert code == 0 and ".trash" in out
    assert sorted(p.name for p in (logs / ".trash" / alpha.stem).iterdir()) == files
    assert not any(alpha.stem in p.name for p in logs.iterdir())
    assert [r["run"] for r in json.loads(cli(capsys, "list", "--json", *d)[1])] == ["beta"]
    trash = json.loads(cli(capsys, "restore", "--list", "--json", *d)[1])
    assert [(t["run"], t["run_id"], t["status"]) for t in trash] == [
        ("alpha", alpha.stem, "finished")
    ]
    assert "alpha" in cli(capsys, "restore", "--list", *d)[1]
    assert cli(capsys, "restore", "alpha", *d)[0] == 0
    assert load_experiment_log(alpha) == original
    assert not list((logs / ".trash").iterdir())
    # Deleted twice: two trash folders; restore asks which; a taken name is refused.
    assert cli(capsys, "delete", "alpha", *d)[0] == 0
    (logs / ".trash" / alpha.stem).rename(logs / ".trash" / f"{alpha.stem}~7")
    assert cli(capsys, "delete", "beta", *d)[0] == 0
    assert cli(capsys, "restore", "beta", *d)[0] == 0
    # Purge: lists every file, asks; without a terminal, --yes is required.
    proc = subprocess.run(
        [sys.executable, "-m", "cs336_basics", "delete", "--purge", "alpha", *d],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2 and "--yes" in proc.stderr
    assert f"{alpha.stem}~7/{alpha.name}" in proc.stdout  # the listing came first
    code, out, _ = cli(capsys, "delete", "--purge", "alpha", "--yes", *d)
    assert code == 0 and "removed 1 run(s) for good" in out
    assert not list((logs / ".trash").iterdir())
    assert [r["run"] for r in json.loads(cli(capsys, "list", "--json", *d)[1])] == ["beta"]


def test_nothing_outside_the_log_dir_is_touched(tmp_path: Path, capsys) -> None:
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    run_simulated(logs, "inside", iters=5)
    victim = run_simulated(outside, "victim", iters=5).path
    (logs / "linked.json").symlink_to(victim)  # a run whose document lives elsewhere
    before = snapshot(outside)
    d = ("--log-dir", str(logs))
    for args in (
        ["tag", str(victim), "+x"],  # a path is never a run name
        ["tag", "../outside/*", "+x"],
        ["delete", str(victim)],
        ["delete", "/etc/passwd"],
        ["rename", "..", "x"],
        ["note", "../outside", "x"],
        ["tag", "victim", "+x"],  # its document is a symbolic link: edits refused
    ):
        code, _, err = cli(capsys, *args, *d)
        assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)
    # Deleting the linked run moves the link, never what it points to.
    assert cli(capsys, "delete", "victim", *d)[0] == 0
    assert (logs / ".trash" / "linked" / "linked.json").is_symlink()
    assert cli(capsys, "restore", "victim", *d)[0] == 0 and (logs / "linked.json").is_symlink()
    # A .trash that points elsewhere is refused (deleted runs would leave the log dir).
    (logs / ".trash").rmdir()
    (logs / ".trash").symlink_to(outside)
    code, _, err = cli(capsys, "delete", "inside", *d)
    assert code == 2 and "not a folder of the log directory" in err
    assert snapshot(outside) == before
    assert victim.exists() and load_experiment_log(victim).tags == []


def test_tag_removal_reads_as_a_tag_not_an_option(logs: Path) -> None:
    """`-draft` after the runs is a tag to remove (argparse alone would take an option)."""
    d = ["--log-dir", str(logs)]
    assert main(["tag", *d, "alpha", "+draft", "+keep"]) == 0
    assert main(["tag", "alpha", "-draft", *d]) == 0
    assert load_experiment_log(_run(logs, "alpha")).tags == ["keep"]
