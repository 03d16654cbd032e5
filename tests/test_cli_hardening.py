"""The command line under misuse: one line and exit 2 for user mistakes, tracebacks for bugs;
the report never damages EXPERIMENT_LOG.md; exact names win over globs; pulled files stay in
their folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import need, run_simulated

from cs336_basics import cli
from cs336_basics.analysis.report import BEGIN, END, splice
from cs336_basics.cli import main
from cs336_basics.core.errors import UnknownRunError, UsageError
from cs336_basics.experiment_analysis import ExperimentAnalyzer
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log_dir = tmp_path_factory.mktemp("cli") / "experiment_logs"
    run_simulated(log_dir, "lr_1e-3", lr=1e-3, iters=30)
    run_simulated(log_dir, "lr_3e-3", lr=3e-3, iters=30, batch_size=32)
    tracker = run_simulated(log_dir, "with_extra", iters=5, finish=False)
    tracker.log_metrics(iteration=5, train_loss=2.0, grad_norm=1.5)
    tracker.finish()
    return log_dir


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("cs336-exp: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# --------------------------------------------------------------------------- report markers

HAND = "# My log\r\n\r\nHand-written intro, caf\u00e9.\r\n\r\n"
TAIL = "\r\n\r\n## Findings\r\n\r\nLearning rate 3e-3 wins.\r\n"


def report(capsys, logs: Path, doc: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "report", "--file", str(doc), "--log-dir", str(logs), "--no-images", *extra)


def test_report_replaces_only_the_marked_block_byte_for_byte(logs, tmp_path, capsys):
    doc = tmp_path / "EXPERIMENT_LOG.md"
    doc.write_bytes(f"{HAND}{BEGIN}\nold table\n{END}{TAIL}".encode())
    code, out, err = report(capsys, logs, doc)
    assert code == 0, err
    first = doc.read_bytes()
    assert first.startswith(HAND.encode()) and first.endswith(TAIL.encode())  # CRLF kept
    assert b"old table" not in first and b"| lr_3e-3 |" in first
    code, out, err = report(capsys, logs, doc)
    assert code == 0 and "unchanged" in out
    assert doc.read_bytes() == first


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (f"{HAND}no markers here{TAIL}", ["no report markers", BEGIN, END, "--append"]),
        (
            f"{HAND}{BEGIN}\nA\n{END}\nmiddle\n{BEGIN}\nB\n{END}\n",
            ["begin marker on lines 5, 9", "end marker on lines 7, 11", "exactly one"],
        ),
        (f"{HAND}{BEGIN}\nA\n{BEGIN}\n{END}\n", ["begin marker on lines 5, 7", "line 8"]),
        (f"{HAND}{END}\nhand-written\n{BEGIN}\n", ["end marker (line 5)", "begin marker (line 7)"]),
        (f"{HAND}{BEGIN}\nhand-written\n", ["begin marker on line 5", "end marker missing"]),
        (f"{HAND}hand-written\n{END}\n", ["begin marker missing", "end marker on line 6"]),
    ],
    ids=["missing", "duplicated", "two-begins", "reversed", "begin-only", "end-only"],
)
def test_report_refuses_bad_markers_and_leaves_the_file_alone(
    logs, tmp_path, capsys, body, fragments
):
    doc = tmp_path / "EXPERIMENT_LOG.md"
    doc.write_bytes(body.encode())
    images = tmp_path / "images"
    code, out, err = run(
        capsys, "report", "--file", str(doc), "--log-dir", str(logs), "--images-dir", str(images)
    )
    assert_one_line_error(code, err, str(doc), *fragments)
    assert doc.read_bytes() == body.encode()
    assert not images.exists()  # refused before drawing anything


def test_report_creates_a_missing_file_then_keeps_it(logs, tmp_path, capsys):
    doc = tmp_path / "NEW_LOG.md"
    code, out, err = report(capsys, logs, doc)
    assert code == 0 and out.startswith("created"), err
    text = doc.read_text()
    assert text.startswith("# Experiment Log\n") and text.count(BEGIN) == text.count(END) == 1
    assert report(capsys, logs, doc)[1].startswith("unchanged")
    assert doc.read_text() == text


def test_report_fills_an_empty_file(logs, tmp_path, capsys):
    doc = tmp_path / "EXPERIMENT_LOG.md"
    doc.write_text("")
    code, out, err = report(capsys, logs, doc)
    assert code == 0 and out.startswith("updated"), err
    assert doc.read_text().startswith("# Experiment Log\n") and BEGIN in doc.read_text()


def test_report_append_adds_one_section_to_a_file_without_markers(logs, tmp_path, capsys):
    doc = tmp_path / "EXPERIMENT_LOG.md"
    doc.write_bytes(f"{HAND}notes{TAIL}".encode())
    code, out, err = report(capsys, logs, doc, "--append")
    assert code == 0, err
    text = doc.read_bytes().decode()
    assert text.startswith(f"{HAND}notes{TAIL}") and text.count(BEGIN) == 1
    assert report(capsys, logs, doc, "--append")[1].startswith("unchanged")
    assert report(capsys, logs, doc)[1].startswith("unchanged")  # markers found from now on


@pytest.mark.parametrize(
    "document",
    [
        f"a\n{BEGIN}\nx\n{END}\nb",
        f"{BEGIN}{END}",
        f"text {BEGIN} inline {END} text\n",
        f"\u00e9\r\n{BEGIN}\r\nold\r\n{END}\r\n\u00e9",
    ],
)
def test_splice_keeps_the_outside_and_is_idempotent(document):
    once = splice(document, "TABLE")
    start, end = document.index(BEGIN), document.index(END) + len(END)
    assert once == document[:start] + f"{BEGIN}\nTABLE\n{END}" + document[end:]
    assert splice(once, "TABLE") == once


def test_report_images_stay_in_the_images_folder(tmp_path, capsys):
    need("matplotlib")
    log_dir = tmp_path / "logs"
    run_simulated(log_dir, "../../escape", iters=5)
    run_simulated(log_dir, "a|b", iters=5)
    doc = tmp_path / "work" / "LOG.md"
    doc.parent.mkdir()
    images = tmp_path / "work" / "images"
    code, out, err = run(
        capsys, "report", "--file", str(doc), "--log-dir", str(log_dir), "--images-dir", str(images)
    )
    assert code == 0, err
    written = {p for p in tmp_path.rglob("*.png")}
    assert written and all(p.parent == images for p in written)
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in written)
    assert "| a\\|b |" in doc.read_text()


# --------------------------------------------------------------------------- misuse


MISUSE = [
    (["export", "lr_1e-3", "-o", "{tmp}/missing/x.csv"], ["missing", "does not exist"]),
    (["export", "lr_1e-3", "-o", "{tmp}"], ["is a directory"]),
    (["export", "lr_1e-3", "-o", "{tmp}/file.txt/x.csv"], ["is not a directory"]),
    (["plot", "lr_*", "-o", "{tmp}/missing/x.png"], ["does not exist"]),
    (["plot", "lr_*", "-o", "{tmp}"], ["is a directory"]),
    (["report", "--file", "{tmp}"], ["--file", "is a directory"]),
    (["report", "--file", "{tmp}/missing/LOG.md"], ["--file", "does not exist"]),
    (["report", "--images-dir", "{tmp}/file.txt", "--file", "{tmp}/L.md"], ["is a file"]),
    (["plot", "lr_*", "--metric", "val_los", "-o", "{tmp}/x.png"], ["'val_los'"]),
    (["show", "lr_1e-3", "--rows", "-1"], ["--rows"]),
    (["show", "nope"], ["no experiment 'nope'", "known:"]),
    (["compare", "--sort", "wat"], ["unknown column 'wat'"]),
    (["best", "--metric", "perplexity"], ["perplexity"]),
    (["plot", "zzz*", "-o", "{tmp}/x.png"], ["no experiment matches 'zzz*'"]),
]


@pytest.mark.parametrize(("args", "fragments"), MISUSE, ids=[" ".join(args) for args, _ in MISUSE])
def test_misuse_is_one_line_and_exit_2(logs, tmp_path, capsys, args, fragments):
    (tmp_path / "file.txt").write_text("not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = run(capsys, *argv, "--log-dir", str(logs))
    assert_one_line_error(code, err, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # nothing written


def test_unknown_metric_lists_the_row_fields_and_the_runs_extras(logs, tmp_path, capsys):
    need("matplotlib")
    out_png = tmp_path / "x.png"
    code, out, err = run(
        capsys, "plot", "*", "--metric", "val_los", "-o", str(out_png), "--log-dir", str(logs)
    )
    assert_one_line_error(code, err, "val_loss", "train_loss", "learning_rate", "grad_norm")
    assert not out_png.exists()
    code, out, err = run(
        capsys, "plot", "with_extra", "--metric", "grad_norm", "-o", str(out_png), "--log-dir",
        str(logs),
    )  # fmt: skip
    assert code == 0 and out_png.read_bytes()[:8] == PNG_MAGIC


def test_json_output_spells_nan_as_the_document_does(tmp_path, capsys):
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name="nan", knob=float("nan"), grid=[1.0, float("inf")]),
        log_dir=tmp_path,
    )
    tracker.log_metrics(iteration=0, train_loss=float("nan"), grad_norm=float("-inf"))
    tracker.finish()
    code, out, err = run(capsys, "show", "nan", "--json", "--log-dir", str(tmp_path))
    assert code == 0, err
    shown = json.loads(out)
    assert shown["status"] == "diverged"
    assert shown["config"]["knob"] == "NaN" and shown["config"]["grid"] == [1.0, "Infinity"]
    assert shown["last_rows"][0]["train_loss"] == "NaN"
    assert shown["last_rows"][0]["grad_norm"] == "-Infinity"
    code, out, err = run(capsys, "compare", "--json", "--log-dir", str(tmp_path))
    assert code == 0 and json.loads(out)[0]["final_train"] == "NaN"


def test_pull_path_with_two_slashes_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["pull", "a/b/c"])
    assert info.value.code == 2
    assert "entity/project" in capsys.readouterr().err


@pytest.mark.parametrize("error", [TypeError("bug"), KeyError("bug"), AttributeError("bug")])
def test_bugs_are_not_hidden_as_usage_errors(logs, monkeypatch, error):
    def broken(args):
        raise error

    monkeypatch.setattr(cli.runs, "cmd_list", broken)
    with pytest.raises(type(error)):
        main(["list", "--log-dir", str(logs)])


def test_environment_errors_are_one_line_exit_1(logs, monkeypatch, capsys):
    def denied(args):
        raise PermissionError(13, "Permission denied", "somewhere")

    monkeypatch.setattr(cli.runs, "cmd_list", denied)
    code, out, err = run(capsys, "list", "--log-dir", str(logs))
    assert code == 1 and err.count("\n") == 1 and "Permission denied" in err


def test_analyzer_errors_are_typed_at_the_source(logs):
    analyzer = ExperimentAnalyzer(logs)
    analyzer.load_all(quiet=True)
    with pytest.raises(UnknownRunError, match="no experiment 'nope'") as info:
        analyzer.get("nope")
    assert isinstance(info.value, KeyError) and str(info.value).startswith("no experiment")
    with pytest.raises(UnknownRunError, match="zzz"):
        analyzer.select(["zzz*"])
    with pytest.raises(UsageError, match="perplexity"):
        analyzer.get_best_experiment("perplexity")
    with pytest.raises(UsageError, match="wat"):
        analyzer.comparison_rows(sort_by="wat")


# --------------------------------------------------------------------------- exact names


def test_exact_name_wins_over_glob(tmp_path, capsys):
    for name in ("lr[1e-3]", "lr1", "lre", "lr-"):
        run_simulated(tmp_path, name, iters=3)
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    assert list(analyzer.select(["lr[1e-3]"])) == ["lr[1e-3]"]
    assert set(analyzer.select(["lr*"])) == {"lr[1e-3]", "lr1", "lre", "lr-"}
    assert set(analyzer.select(["lr[1e]"])) == {"lr1", "lre"}  # no such name: a glob
    run_id = analyzer.get("lr[1e-3]").run_id
    assert list(analyzer.select([run_id])) == ["lr[1e-3]"]
    code, out, err = run(capsys, "compare", "lr[1e-3]", "--json", "--log-dir", str(tmp_path))
    assert code == 0 and [r["experiment"] for r in json.loads(out)] == ["lr[1e-3]"]


def test_exact_name_selects_every_run_of_that_name(tmp_path):
    first = run_simulated(tmp_path, "dup[1]", iters=3)
    second = run_simulated(tmp_path, "dup[1]", iters=4)
    analyzer = ExperimentAnalyzer(tmp_path)
    analyzer.load_all(quiet=True)
    chosen = analyzer.select(["dup[1]"])
    assert {log.run_id for log in chosen.values()} == {first.run_id, second.run_id}


# --------------------------------------------------------------------------- pull


@pytest.mark.slow
def test_pulled_run_id_with_dot_dot_stays_in_save_dir(tmp_path, monkeypatch):
    need("wandb")
    from fake_wandb import API_KEY, FakeRun, FakeWandb

    from cs336_basics.wandb_adapter.pull import pull_runs

    server = FakeWandb()
    try:
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        monkeypatch.setenv("WANDB_API_KEY", API_KEY)
        monkeypatch.setenv("WANDB_ENTITY", "ent")
        history = [{"_step": i, "iteration": i, "train/loss": 3.0 - 0.1 * i} for i in range(3)]
        server.add("proj", FakeRun(id="x/../../../escape", name="evil", history=history))
        save_dir = tmp_path / "a" / "b" / "save"
        before = set(tmp_path.rglob("*"))
        logs = pull_runs("ent/proj", save_dir=save_dir)
    finally:
        server.close()
    written = set(tmp_path.rglob("*")) - before
    files = [p for p in written if p.is_file()]
    assert {p.parent for p in files} == {save_dir}, written
    files = [p for p in files if not p.name.startswith(".")]  # the document's cache
    assert len(files) == 1, written
    assert "/" not in files[0].name and ".." not in files[0].name
    assert Path(logs[0].source) == files[0]
    assert logs[0].mirrors["wandb"]["run_id"] == "x/../../../escape"  # the real id is kept
