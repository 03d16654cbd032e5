"""Where a run came from (``runtime.provenance``): recorded at start, offline, in a git
checkout and outside one, with the data's fingerprints; torch never imported for it; no
environment variable's value anywhere in the run's files."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import requires

import cs336_basics
from cs336_basics import ExperimentConfig, ExperimentTracker, load_experiment_log
from cs336_basics.cli import main
from cs336_basics.runtime import provenance
from cs336_basics.store.layout import RunFiles

SRC = str(Path(cs336_basics.__file__).resolve().parents[1])
ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20

SCRIPT = """
import json, os, sys
from cs336_basics import ExperimentConfig, ExperimentTracker
tracker = ExperimentTracker(ExperimentConfig(experiment_name="prov"), log_dir=sys.argv[1],
                            data_files={"train": sys.argv[2], "missing": "no/such.bin"})
for i in range(5):
    tracker.log_metrics(iteration=i, train_loss=2.0 - i / 10)
tracker.finish()
with open(sys.argv[3], "w") as out:  # outside the log dir: what the child's environment held
    json.dump({"environ": dict(os.environ), "torch": "torch" in sys.modules}, out)
"""


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run([*command, *args], capture_output=True, text=True, check=True).stdout


def reference_fingerprint(path: Path) -> str:
    """The documented fingerprint, computed here independently."""
    data = path.read_bytes()
    size = len(data)
    digest = hashlib.sha256(size.to_bytes(8, "little"))
    if size <= 3 * MIB:
        digest.update(data)
    else:
        middle = size // 2 - MIB // 2
        for part in (data[:MIB], data[middle : middle + MIB], data[-MIB:]):
            digest.update(part)
    return "sha256:" + digest.hexdigest()


def run_child(tmp_path: Path, folder: Path, data: Path, tag: str) -> tuple[dict, dict, Path]:
    """Run the script in ``folder`` with an environment of known values (secrets among
    them); returns the run's document, what the child saw, and the log dir."""
    script = folder / "train.py"
    logs = tmp_path / f"logs_{tag}"
    seen = tmp_path / f"seen_{tag}.json"
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": SRC,
        "HOME": str(tmp_path / "home"),
        "WANDB_API_KEY": secrets.token_hex(20),
        "HF_TOKEN": "hf_" + secrets.token_urlsafe(24),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "MY_PASSWORD": "correct horse battery staple",
        "CS336_PROVENANCE": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(script), str(logs), str(data), str(seen), "--seed=3"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (document,) = logs.glob("*.json")
    return json.loads(document.read_text()), json.loads(seen.read_text()), logs


def assert_no_environment_value_stored(logs: Path, environ: dict[str, str]) -> None:
    contents = {p.name: p.read_bytes() for p in logs.iterdir() if p.is_file()}
    assert contents
    for name, value in environ.items():
        if len(value) < 4:
            continue
        for file, data in contents.items():
            assert value.encode() not in data, f"the value of ${name} is in {file}"


def test_recorded_in_a_git_checkout_with_its_diff_and_data(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "trunk")
    (repo / "train.py").write_text(SCRIPT)
    (repo / "model.py").write_text("WIDTH = 64\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    head = git(repo, "rev-parse", "HEAD").strip()
    data = tmp_path / "train.bin"
    data.write_bytes(bytes(range(256)) * (5 * MIB // 256) + b"tail")  # > 3 MiB: sampled

    doc, seen, logs = run_child(tmp_path, repo, data, "clean")
    record = doc["provenance"]
    assert record["git"] == {
        "repository": str(repo),
        "commit": head,
        "branch": "trunk",
        "dirty": False,
        "untracked_files": 0,
    }
    assert record["command"] == [str(repo / "train.py"), str(logs), str(data), str(
        tmp_path / "seen_clean.json"), "--seed=3"]  # fmt: skip
    assert record["cwd"] == str(repo)
    train = record["data"]["train"]
    assert train["size"] == data.stat().st_size and train["path"] == str(data)
    assert train["fingerprint"] == reference_fingerprint(data)
    assert "error" in record["data"]["missing"]
    # torch: never imported for this (the child did not import it); its version from metadata.
    assert seen["torch"] is False and "metadata" in record["packages"]["torch_from"]
    assert record["python"] and record["host"] and record["gpus_from"] in (None, "nvidia-smi")
    assert not list(logs.glob(".*.diff"))
    assert_no_environment_value_stored(logs, seen["environ"])

    # A dirty tree: the diff is saved beside the run, its size and hash in the document.
    (repo / "model.py").write_text("WIDTH = 128\n")
    (repo / "notes.txt").write_text("untracked\n")
    doc, seen, logs = run_child(tmp_path, repo, data, "dirty")
    state = doc["provenance"]["git"]
    assert state["dirty"] is True and state["untracked_files"] == 1
    diff = (logs / state["diff_file"]).read_bytes()
    assert diff == git(repo, "diff", "HEAD").encode()
    assert b"+WIDTH = 128" in diff and not state["diff_truncated"]
    assert state["diff_sha256"] == hashlib.sha256(diff).hexdigest()
    assert state["diff_file"] == RunFiles(logs, doc["run_id"]).diff.name
    assert_no_environment_value_stored(logs, seen["environ"])


def test_recorded_outside_a_git_checkout(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text(SCRIPT)
    data = tmp_path / "small.bin"
    data.write_bytes(b"x" * 1000)
    doc, seen, logs = run_child(tmp_path, folder, data, "plain")
    assert doc["provenance"]["git"] == {"error": f"not a git repository: {folder}"}
    assert doc["provenance"]["data"]["train"]["fingerprint"] == reference_fingerprint(data)
    assert_no_environment_value_stored(logs, seen["environ"])


def test_fingerprint_reads_three_regions(tmp_path: Path) -> None:
    path = tmp_path / "tokens.bin"
    data = bytearray(b"\x07" * (10 * MIB))
    path.write_bytes(data)
    first = provenance.fingerprint(path)["fingerprint"]
    data[2 * MIB] ^= 1  # outside the three sampled MiB: by design, not seen
    path.write_bytes(data)
    assert provenance.fingerprint(path)["fingerprint"] == first
    for where in (10, 5 * MIB, 10 * MIB - 3):  # first, middle, last MiB: seen
        data[where] ^= 1
        path.write_bytes(data)
        changed = provenance.fingerprint(path)["fingerprint"]
        assert changed != first
        data[where] ^= 1
    path.write_bytes(data + b"\x07")  # one more byte: the size changes it
    assert provenance.fingerprint(path)["fingerprint"] != first


def test_resume_adds_an_entry_and_show_prints_it(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(provenance, "code_folder", lambda: tmp_path)  # not a checkout
    config = ExperimentConfig(experiment_name="resumed")
    tracker = ExperimentTracker(config, log_dir=tmp_path, provenance=True)
    tracker.log_metrics(iteration=0, train_loss=1.0)
    tracker.close()
    again = ExperimentTracker(config, log_dir=tmp_path, resume=tracker.path, provenance=True)
    again.log_metrics(iteration=1, train_loss=0.9)
    log = again.finish()
    assert log.provenance["git"]["error"].startswith("not a git repository")
    (entry,) = log.provenance["resumes"]
    assert entry["git"] == {"error": f"not a git repository: {tmp_path}"}
    assert load_experiment_log(tracker.path).provenance == log.provenance
    assert main(["show", "resumed", "--log-dir", str(tmp_path), "--rows", "0"]) == 0
    out = capsys.readouterr().out
    assert "Provenance:" in out and "not a git repository" in out and "resumed:" in out
    # Off: nothing recorded (the suite's default, CS336_PROVENANCE=0, is the same).
    off = ExperimentTracker(ExperimentConfig(experiment_name="off"), log_dir=tmp_path)
    off.log_metrics(iteration=0, train_loss=1.0)
    assert off.finish().provenance == {}


@pytest.mark.slow
@requires("torch", "numpy")  # the example trains a real model
def test_the_training_example_records_it_in_and_outside_a_checkout(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not run from a git checkout")
    code = tmp_path / "copy"
    code.mkdir()
    for name in ("training_together.py", "lm_model.py", "prepare_text.py"):
        shutil.copy(ROOT / "examples" / name, code / name)
    env = dict(os.environ, CS336_PROVENANCE="1", PYTHONPATH=SRC)
    small = ["--d-model", "16", "--num-layers", "1", "--num-heads", "2", "--d-ff", "32",
             "--context-length", "16", "--batch-size", "4", "--eval-iters", "1",
             "--max-iters", "2", "--eval-interval", "2", "--no-plot"]  # fmt: skip
    records = {}
    for where, script in (("checkout", ROOT / "examples"), ("copy", code)):
        logs = tmp_path / f"logs_{where}"
        proc = subprocess.run(
            [
                sys.executable,
                str(script / "training_together.py"),
                "--log-dir",
                str(logs),
                "--data-dir",
                str(tmp_path / "data"),
                "--checkpoint-dir",
                str(tmp_path / "ckpt"),
                *small,
            ],  # fmt: skip
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        (document,) = logs.glob("*.json")
        records[where] = load_experiment_log(document).provenance
    inside = records["checkout"]
    head = git(ROOT, "rev-parse", "HEAD").strip()
    assert inside["git"]["commit"] == head and inside["git"]["repository"] == str(ROOT)
    assert inside["packages"]["torch_from"] == "imported"  # the example imports torch
    assert set(inside["data"]) == {"train", "val"}
    for data in inside["data"].values():
        assert data["size"] > 0 and data["fingerprint"] == reference_fingerprint(Path(data["path"]))
    outside = records["copy"]
    assert outside["git"] == {"error": f"not a git repository: {code}"}
    assert outside["data"]["train"]["fingerprint"] == inside["data"]["train"]["fingerprint"]
