"""The one loader: a run from its files, and where in its live journal the reading stopped.

Every reader (the analyzer, the command line, the page, the W&B mirror and push, a resume)
loads a run through :func:`load_run`, so the recovery rules live here once:

- the journals are read first (the live one, then the kept ones), then the document: a
  background save may land a newer document and remove the kept journals it holds at any
  moment, and a document read last is never older than what the journals read first
  continue;
- the document comes from its columnar cache when that describes this very file;
- the kept journals of saves not yet on disk, then the live journal, are replayed on top
  (``journal.replay``); a journal the document already holds is skipped (stale), and of a
  kept and a live journal with one base (rotated while being read), the kept one is used;
- a run nobody writes any more is ``unfinished`` (a ``running`` status only while the
  journal's writer process lives); a torn last line of a dead writer is reported and
  skipped, an incomplete one of a live writer is left for the next read;
- the state recorded by any mirror process is merged last (it may be newer than all of it:
  a mirror goes on after a crash, or after ``finish()``);
- other ranks' system-metrics samples (``RunFiles.rank_system``) go to
  ``log.system_by_rank``.

:class:`LoadedRun` carries the position after the last record read from the live journal,
so a follower (``journal.JournalFollower``: the page, a mirror) continues from there and
reads no record twice and misses none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import LogFormatError
from ..core.history import History
from ..core.log import ExperimentLog
from . import journal as journal_format
from .document import read_document
from .fileio import read_bytes_if_any, read_state
from .layout import RunFiles
from .lock import pid_alive

logger = logging.getLogger("cs336_basics")

ProblemHandler = Callable[[str], None]


def _log_problem(problem: str) -> None:
    logger.warning("%s", problem)


@dataclass
class LoadedRun:
    """A loaded run: the log, the newest save its records reach (a document written from it
    takes the next ``save_id``), and ``(base, offset)``: the journal file and the byte
    offset where a follower of the live journal goes on."""

    log: ExperimentLog
    save_id: int
    position: tuple[int, int]


def load_run(
    path: str | Path,
    on_problem: ProblemHandler = _log_problem,
    *,
    cache: bool = True,
    lazy: bool = True,
) -> LoadedRun:
    """Load the run whose ``.json`` or ``.jsonl`` is ``path`` (see the module docstring).

    ``cache``: write a missing columnar cache (the page, which never writes in a log
    directory, passes False). ``lazy``: a finished run's histories are read on first use.
    Raises ``FileNotFoundError`` when the run has no file, ``LogFormatError`` when it cannot
    be read; problems met on the way (a torn line, a bad record) go to ``on_problem``.
    """
    files = RunFiles.of(path)
    loaded = _load_files(files, on_problem, cache, lazy)
    log = loaded.log
    for name, state_file in files.mirror_states().items():
        state = read_state(state_file)
        if state:
            log.mirrors[name] = {**(log.mirrors.get(name) or {}), **state}
    for rank, samples in files.rank_systems():
        data = read_bytes_if_any(samples)
        if data is None:
            continue
        rows, problems = journal_format.read_samples(data, str(samples))
        for problem in problems:
            on_problem(problem)
        log.system_by_rank[rank] = History(rows)
    return loaded


def load_experiment_log(path: Path | str) -> ExperimentLog:
    """Load a run saved by ``save()`` or recovered from its journal (marked unfinished)."""
    return load_run(Path(path)).log


JournalFile = tuple[int, Path, bytes]


def _load_files(files: RunFiles, on_problem: ProblemHandler, cache: bool, lazy: bool) -> LoadedRun:
    document = files.document
    parts = read_journal_files(files)
    log: ExperimentLog | None = None
    save_id: int | None = None
    if document.exists():
        log, save_id = read_document(document, write=cache, lazy=lazy and not parts)
        if log.status == "finished":
            return LoadedRun(log, save_id, (save_id, 0))
    chain = journal_chain(parts, save_id)
    if not chain:
        if log is None:
            raise FileNotFoundError(f"no experiment log at {files.document}")
        if log.status == "running":  # saved, then the writer died before its journal
            log.status = "unfinished"
        return LoadedRun(log, save_id or 0, (save_id or 0, 0))
    expected = save_id
    reached = save_id or 0  # the newest save the records reach (a rewrite goes past it)
    position = (save_id or 0, 0)
    for base, part, data in chain:
        if log is not None and base != (expected or 0):
            on_problem(
                f"{part}: continues save {base} but the run reached save {expected or 0}; "
                "the records between are missing (skipped)"
            )
            break
        live = part == files.journal
        complete = data[: data.rfind(b"\n") + 1] if live else data
        log, problems = journal_format.replay(part, log, expected, pid_alive, complete)
        for problem in problems:
            on_problem(problem)
        rest = data[len(complete) :]
        if live and rest.strip() and log is not None and log.status != "running":
            number = complete.count(b"\n") + 1
            on_problem(f"{part}: line {number} is torn (skipped)")
        expected = base + 1
        reached = max(reached, base)
        position = (base, len(complete)) if live else (base + 1, 0)
    if log is None:
        raise LogFormatError(f"{files.journal}: empty journal")
    if log.source is None or not document.exists():
        log.source = str(document if document.exists() else files.journal)
    if not log.run_id:
        log.run_id = files.stem
    return LoadedRun(log, reached, position)


def read_journal_files(files: RunFiles) -> list[JournalFile]:
    """``(base, path, bytes)`` of the run's kept journals, then its live journal, read now.

    The live journal is read first: a rotation right after turns it into a kept journal
    that the listing then finds, whole (and preferred: see :func:`journal_chain`); a kept
    journal removed before it is read was held by a document on disk by then."""
    live = read_bytes_if_any(files.journal)
    found = read_kept_journals(files)
    if live is None:
        return found
    header = journal_format.header_of(live)
    if header is not None:
        found.append((int(header.get("base") or 0), files.journal, live))
    elif live.strip() and not found:
        found.append((-1, files.journal, live))  # no readable header: the replay reports it
    return found


def read_kept_journals(files: RunFiles) -> list[JournalFile]:
    """``(base, path, bytes)`` of the run's kept journals, oldest first (one removed before
    it is read was held by a document on disk by then)."""
    found: list[JournalFile] = []
    for base, kept in files.kept_journals():
        data = read_bytes_if_any(kept)
        if data is not None:
            found.append((base, kept, data))
    return found


def journal_chain(parts: list[JournalFile], save_id: int | None) -> list[JournalFile]:
    """The journal files that continue a document of ``save_id`` (None: no document), in
    order: the kept journals of saves still being written (or cut short by a crash), then
    the live journal. A journal the document holds is left out; of a kept and a live
    journal with one base (rotated while being read), the kept one, complete, is used."""
    floor = save_id or 0
    chain: dict[int, JournalFile] = {}
    for base, path, data in parts:
        if base == -1:
            chain[floor] = (floor, path, data)
        elif base >= floor:
            chain.setdefault(base, (base, path, data))
    return [chain[b] for b in sorted(chain)]
