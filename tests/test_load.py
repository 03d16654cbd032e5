"""``store/load``: a reader racing the writer (a background save landing, a journal
rotating) reads every row once."""

from __future__ import annotations

import threading

from helpers import hold_document_writes, started_tracker

from cs336_basics.store.load import load_run


def test_a_reader_racing_the_background_saver_gets_every_row_once(tmp_path, monkeypatch):
    import cs336_basics.store.load as loader

    tracker = started_tracker(tmp_path, "race")
    for i in range(1000):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.save(wait=True)
    for i in range(1000, 2000):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    gate = threading.Event()
    hold_document_writes(monkeypatch, gate)
    tracker.save()  # document 2 is being written; kept journal 1 holds rows 1000-1999
    for i in range(2000, 2100):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.flush()
    real = loader.read_journal_files

    def journals_then_the_saver_lands(files):
        parts = real(files)
        gate.set()
        tracker._saves.saver.wait()  # document 2 lands and kept journal 1 goes, mid-load
        return parts

    monkeypatch.setattr(loader, "read_journal_files", journals_then_the_saver_lands)
    problems: list[str] = []
    log = load_run(tracker.path, on_problem=problems.append).log
    assert log.metrics_history.column("iteration") == list(range(2100)) and problems == []
    tracker.close()


def test_a_reader_racing_a_rotation_gets_every_row_and_a_live_status(tmp_path, monkeypatch):
    from cs336_basics.store.layout import RunFiles

    tracker = started_tracker(tmp_path, "rotating")
    for i in range(100):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.save(wait=True)
    for i in range(100, 150):
        tracker.log_metrics(iteration=i, train_loss=1.0)
    tracker.flush()
    real = RunFiles.kept_journals
    gate = threading.Event()
    hold_document_writes(monkeypatch, gate)

    def rotated_in_between(files):
        tracker.save()  # the live journal just read becomes kept journal 1
        monkeypatch.setattr(RunFiles, "kept_journals", real)
        return real(files)

    monkeypatch.setattr(RunFiles, "kept_journals", rotated_in_between)
    problems: list[str] = []
    log = load_run(tracker.path, on_problem=problems.append).log
    assert log.metrics_history.column("iteration") == list(range(150))
    assert log.status == "running" and problems == []
    gate.set()
    tracker.close()
