"""Loading one run into columns, with the journal position where reading stopped.

This runs in a worker process (see :mod:`.store`): decoding a document builds every row as
an object first (a 1M-row run peaks well above a gigabyte), and that peak, and the CPU time,
stay out of the server. The worker sends back only the columns.

The reading is the package's own, the steps ``storage.load_run`` takes: the document
through ``storage.read_document`` (from its columnar cache when current; the dashboard never
writes one), the kept journals of a save still being written, then the live journal through
``journal.replay``. The live journal is handed to ``replay`` as its complete lines read
once, so that the byte offset where the replay stopped is known exactly and the live
follower goes on from there (no record read twice, none missed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..tracking import journal
from ..tracking.errors import LogFormatError
from ..tracking.storage import pid_alive, read_document, read_kept_journals
from .columns import RunData, from_log
from .series import precompute


@dataclass
class Loaded:
    """A loaded run and where its journal follower starts: ``(base, offset)`` as in
    :class:`~cs336_basics.tracking.journal.JournalFollower`."""

    data: RunData
    base: int
    offset: int
    follow: bool
    problems: list[str]


def load(path: str) -> Loaded:
    """:func:`read`, plus the fine thinning of the first chart's curves."""
    loaded = read(path)
    precompute(loaded.data)
    return loaded


def read(path: str) -> Loaded:
    """Load the run whose ``.json`` or ``.jsonl`` is ``path``; raises ``LogFormatError`` or
    ``OSError`` when it cannot be read."""
    where = Path(path)
    document, live = where.with_suffix(".json"), where.with_suffix(journal.SUFFIX)
    # Journals first, the live one before the kept ones, then the document (never older
    # than they are: see storage.read_journal_files).
    try:
        raw = live.read_bytes()
    except FileNotFoundError:
        raw = b""
    kept = read_kept_journals(live)
    log = None
    save_id = 0
    problems: list[str] = []
    if document.exists():
        log, save_id = read_document(document, write=False, lazy=False)
        if log.status == "finished":
            return Loaded(from_log(log, save_id), save_id, 0, False, [])
    # A background save under way (or cut short): the journals it holds come first.
    expected = save_id
    for base, part, data in kept:
        if base == expected:
            log, found = journal.replay(part, log, expected if log else None, pid_alive, data)
            problems += found
            expected += 1
    complete = raw[: raw.rfind(b"\n") + 1]
    header = journal.header_of(complete) or {}
    if log is not None and complete and (header.get("base") or 0) < expected:
        # Rotated while read: a kept journal above held all of it; follow the next one.
        return Loaded(from_log(log, save_id), expected, 0, True, problems)
    if not complete:
        if log is None:
            raise LogFormatError(f"{live}: empty journal")
        if log.status == "running":  # saved, then the process died before its journal
            log.status = "unfinished"
        return Loaded(from_log(log, save_id), save_id, 0, True, problems)
    replayed, found = journal.replay(live, log, expected if log else None, pid_alive, complete)
    problems += found
    if replayed is None:
        raise LogFormatError(f"{live}: empty journal")
    base = header.get("base") or 0
    if log is not None and base != expected:  # stale: wait for the next one
        return Loaded(from_log(replayed, save_id), save_id, 0, True, problems)
    if not replayed.run_id:
        replayed.run_id = document.stem
    if not document.exists():
        replayed.source = str(live)
    return Loaded(from_log(replayed, save_id), int(base), len(complete), True, problems)
