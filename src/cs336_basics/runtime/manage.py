"""Changing a run that nobody writes any more: its tags, group and notes, its name; moving it
to the trash and back; deleting it for good (``cs336-exp tag``, ``note``, ``rename``,
``delete``, ``restore``).

Every change holds the run's lock (``store.lock.RunLock``) while it works, so a live
tracker, a resume or a push cannot write the run meanwhile, and a run being written (its
lock is held, or its W&B mirror process still sends) is refused with
:class:`~cs336_basics.core.errors.RunInUseError`. An edit reads the whole run (document
and journals of a run that died) and writes its document atomically with the next
``save_id``, with a fresh columnar cache (``store.document.write_document``); the journals
it holds are then removed, as ``push`` does.

Files move only inside the log directory: a run's files (``RunFiles.all_files``, named
only by ``store.layout``) go into ``.trash/RUN/`` by ``os.rename``, which moves a symbolic
link itself, never what it points to; a ``.trash`` that is a link or a file is refused; a
file of a trash folder that is not one of its run's names is never moved back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import LogFormatError, RunInUseError, UsageError
from ..core.log import ExperimentLog
from ..store.document import recover, write_document
from ..store.fileio import fsync_dir
from ..store.layout import (
    DOCUMENT,
    JOURNAL,
    RunFiles,
    new_trash_slot,
    trash_dir,
    trash_slots,
)
from ..store.load import LoadedRun, load_run
from ..store.lock import RunLock
from .mirrors import mirror_running, remove_orphan_segments


def _refuse_live(files: RunFiles, what: str) -> None:
    for name in files.mirror_states():
        if mirror_running(files, name):
            raise RunInUseError(
                f"run {files.stem}: its {name} mirror process is still sending; {what} it "
                "once that ends"
            )


@contextlib.contextmanager
def stopped_run(files: RunFiles, what: str) -> Iterator[RunLock]:
    """Hold the lock of a run nobody writes (``RunInUseError`` for a live one)."""
    try:
        lock = RunLock.acquire(files, purpose=f"cs336-exp {what}")
    except RunInUseError as exc:
        raise RunInUseError(f"{exc}; cannot {what} a live run") from None
    try:
        _refuse_live(files, what)
        yield lock
    finally:
        lock.release()


def edit_run(path: str | Path, change: Callable[[ExperimentLog], None], what: str) -> ExperimentLog:
    """Apply ``change`` to the run whose document or journal is ``path`` and write it back
    (see the module docstring); returns the run as written."""
    files = RunFiles.of(path)
    if files.document.is_symlink():
        raise UsageError(
            f"{files.document}: a symbolic link; {what} edits only runs whose document is a "
            "file of the log directory"
        )
    with stopped_run(files, what):
        recover(files)  # a save cut short in the middle of appending
        loaded: LoadedRun = load_run(files.document, lazy=False)
        log = loaded.log
        if log.status == "running":  # a journal whose writer lives but holds no lock
            raise RunInUseError(f"run {files.stem} is being written; cannot {what} a live run")
        change(log)
        write_document(files.document, log, loaded.save_id + 1)
        for _, kept in files.kept_journals():
            with contextlib.suppress(FileNotFoundError):
                kept.unlink()  # the document holds them now
        with contextlib.suppress(FileNotFoundError):
            files.journal.unlink()
        remove_orphan_segments(files)
    log.source = str(files.document)
    return log


# ---------------------------------------------------------------------------------------
# The trash.


def _check_trash(log_dir: Path) -> Path:
    trash = trash_dir(log_dir)
    if trash.is_symlink() or (trash.exists() and not trash.is_dir()):
        raise UsageError(
            f"{trash}: not a folder of the log directory (a link or a file); deleted runs go "
            "there: move it away first"
        )
    return trash


def trash_run(path: str | Path) -> Path:
    """Move every file of the run at ``path`` into a folder of the trash; returns it."""
    files = RunFiles.of(path)
    log_dir = files.folder
    trash = _check_trash(log_dir)
    with stopped_run(files, "delete"):
        moving = [p for p in files.all_files() if p != files.lock]
        trash.mkdir(exist_ok=True)
        slot = new_trash_slot(log_dir, files.stem)
        slot.mkdir()
        for source in moving:
            os.rename(source, slot / source.name)  # a link moves as a link
        fsync_dir(slot)
        fsync_dir(log_dir)
    return slot


@dataclass
class TrashedRun:
    """A run in the trash: its id, folder, files, and the run itself when readable."""

    run_id: str
    slot: Path
    files: list[Path] = field(default_factory=list)
    log: ExperimentLog | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.log.experiment_name if self.log is not None else self.run_id

    @property
    def size(self) -> int:
        return sum(p.lstat().st_size for p in self.files)


def _belongs(name: str, stem: str) -> bool:
    return name in (stem + DOCUMENT, stem + JOURNAL) or name.startswith(f".{stem}.")


def trashed_runs(log_dir: Path) -> list[TrashedRun]:
    """Every run in the trash of ``log_dir`` (read, never written: no cache is left)."""
    found = []
    for run_id, slot in trash_slots(log_dir):
        entry = TrashedRun(run_id, slot, sorted(p for p in slot.iterdir()))
        files = RunFiles(slot, run_id)
        target = files.document if files.document.exists() else files.journal
        try:
            entry.log = load_run(target, lambda problem: None, cache=False).log
        except (LogFormatError, OSError) as exc:
            entry.error = str(exc)
        found.append(entry)
    return found


def restore_run(entry: TrashedRun, log_dir: Path) -> RunFiles:
    """Move a trashed run's files back into ``log_dir``; refuses when any is taken there."""
    files = RunFiles(log_dir, entry.run_id)
    strangers = [p.name for p in entry.files if not _belongs(p.name, entry.run_id)]
    if strangers or any(p.is_dir() and not p.is_symlink() for p in entry.files):
        raise UsageError(
            f"{entry.slot}: holds {', '.join(strangers) or 'a folder'}, not a file of run "
            f"{entry.run_id}; move it away by hand"
        )
    taken = [p.name for p in entry.files if os.path.lexists(log_dir / p.name)]
    if taken:
        raise UsageError(
            f"run {entry.run_id}: {', '.join(taken)} exists in {log_dir} already; rename or "
            "delete that run first"
        )
    with stopped_run(files, "restore"):
        for source in entry.files:
            if source.name != files.lock.name:
                os.rename(source, log_dir / source.name)
        fsync_dir(log_dir)
        with contextlib.suppress(OSError):
            entry.slot.rmdir()
    return files


def purge_run(entry: TrashedRun) -> int:
    """Remove a trashed run's folder for good; returns the bytes freed."""
    freed = 0
    for path in entry.files:
        if path.is_dir() and not path.is_symlink():
            raise UsageError(f"{path}: a folder in the trash; remove it by hand")
        freed += path.lstat().st_size
        path.unlink()
    entry.slot.rmdir()
    return freed
