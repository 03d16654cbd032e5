"""Every file of a run directory, named here and nowhere else.

A run named ``NAME`` started at ``TS`` gets the stem ``experiment_<safe NAME>_<TS>[_<n>]``
(a run pulled or imported from W&B: ``wandb_<entity>_<project>_<id>``). Its files, all in
the log directory (``RUN`` is the stem, ``SINK`` a sink's name such as ``wandb``, ``N`` the
eight-digit ``save_id`` a journal continues):

=============================  ===============================  ================================
file                           what it is; written by           goes away
=============================  ===============================  ================================
``RUN.json``                   the document, the guide's JSON   never (``cs336-exp delete``
                               (``codec``); every save, push,   moves it to ``.trash/``)
                               pull, import (atomic rename)
``RUN.jsonl``                  the live journal (``journal``):  after the final save of
                               records since the document;      ``finish()``
                               the tracker's journal thread
``.RUN.kept-N.jsonl``          a journal rotated by ``save()``  once a document holding it is
                               (``N``: its base); the tracker   on disk (the saver; a resume)
``.RUN.seg-N.jsonl``           the same, kept for a mirror      when the mirror has read it; at
                               process; the tracker             resume, push, or ``finish()``
                                                                if no mirror runs
``.RUN.json.undo``             what a save appending to the     when that save is done; a
                               document in place cut off        cut-short one's by the next
                               (readers read the old document)  writer (it restores the file)
``.RUN.lock``                  the run's lock (``flock``,       when the holder finishes or
                               holder's pid); tracker, push     closes
``.RUN.columns``               the columnar cache of the        replaced by the next save; a
                               document (``cache``); each       stale one is ignored
                               save, first load without one
``.RUN.SINK-mirror.json``      a mirror process's state and     after ``finish()`` once the
                               journal position; the mirror     mirror ended; push
``.RUN.SINK-mirror.json.lock`` one mirror process per run at a  with the state file
                               time; the mirror process
``.RUN.SINK-mirror.log``       the mirror process's output      when it finished cleanly
``.RUN.SINK-mirror-start.json`` a document snapshot left by     with the state file
                               versions before 0.3
``.RUN.system-rankK.jsonl``    system-metrics samples of rank   never (the loader reads them
                               ``K`` > 0 of a distributed job   into ``system_by_rank``)
                               (header, then ``s`` records of
                               ``journal``); that rank's
                               sampler
``.RUN.diff``                  ``git diff HEAD`` of the code    with the run (never rewritten;
                               the run started from, when the   a resume records only its
                               tree was dirty (capped, see      hash in the document)
                               ``runtime.provenance``); the
                               tracker's provenance thread
``.RUN.*.tmp-PID[-TID]``       a file being written (atomic     renamed into place; a killed
                               writes); any writer              writer's at resume, finish,
                                                                push
=============================  ===============================  ================================

Hidden files (``.RUN.*``) are never runs: :func:`run_files` lists documents and journals.
Besides runs a log directory may hold ``curves/`` (report images), ``wandb_files/`` (the
drop-in's ``run.dir``), ``.trash/`` (deleted runs: ``cs336-exp delete`` moves every
file of a run into ``.trash/RUN/``, or ``.trash/RUN~N/`` when that is taken, names
unchanged; ``cs336-exp restore`` moves them back; :func:`trash_dir`, :func:`trash_slots`)
and, for an Optuna study run by ``cs336_basics.sweep``, ``<safe STUDY>.optuna.log`` (the
study's default storage, Optuna's journal file, shared by every worker of the study;
:func:`study_storage`) with Optuna's lock ``<safe STUDY>.optuna.log.lock`` beside it while a
worker writes.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

DOCUMENT = ".json"
JOURNAL = ".jsonl"
CACHE = ".columns"
STUDY_STORAGE = ".optuna.log"
_MIRROR_STATE = "-mirror.json"
_RANK_SYSTEM = ".system-rank"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
_TEMP = re.compile(r"\.tmp-(\d+)(?:-\d+)?$")
MAX_NAME_CHARS = 80


def safe_name(name: str) -> str:
    """A file-name-safe rendering of an experiment name (never a path, never empty)."""
    text = _DOTS.sub("_", _UNSAFE.sub("_", name)).strip("._-")[:MAX_NAME_CHARS].strip("._-")
    return text or "run"


def inside(directory: Path, name: str) -> Path:
    """``directory / name``, refusing any name that would land outside ``directory``."""
    target = directory / name
    if Path(name).name != name or name in ("", ".", "..") or target.parent != directory:
        raise ValueError(f"file name {name!r}: expected a plain name inside {directory}")
    return target


def temp_path(target: Path, per_thread: bool = True) -> Path:
    """Where a file is written before it is renamed to ``target`` (hidden, tagged with the
    writer's pid, and thread unless ``per_thread`` is False)."""
    name = target.name if target.name.startswith(".") else f".{target.name}"
    tag = f"{os.getpid()}-{threading.get_ident()}" if per_thread else str(os.getpid())
    return target.with_name(f"{name}.tmp-{tag}")


class RunFiles:
    """The files of one run: ``RunFiles(folder, stem)``, or :meth:`of` a document or
    journal path."""

    __slots__ = ("folder", "stem")

    def __init__(self, folder: Path, stem: str) -> None:
        self.folder = Path(folder)
        self.stem = stem

    @classmethod
    def of(cls, path: str | Path) -> RunFiles:
        """The run whose document or journal is ``path`` (any other suffix is dropped)."""
        path = Path(path)
        stem = path.stem if path.suffix in (DOCUMENT, JOURNAL) else path.name
        return cls(path.parent, stem)

    def __repr__(self) -> str:
        return f"RunFiles({str(self.folder)!r}, {self.stem!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunFiles) and (self.folder, self.stem) == (
            other.folder,
            other.stem,
        )

    def __hash__(self) -> int:
        return hash((self.folder, self.stem))

    def _hidden(self, suffix: str) -> Path:
        return self.folder / f".{self.stem}{suffix}"

    @property
    def document(self) -> Path:
        return self.folder / f"{self.stem}{DOCUMENT}"

    @property
    def journal(self) -> Path:
        return self.folder / f"{self.stem}{JOURNAL}"

    @property
    def undo(self) -> Path:
        """The undo record of a save appending to the document in place."""
        return self._hidden(f"{DOCUMENT}.undo")

    @property
    def lock(self) -> Path:
        return self._hidden(".lock")

    @property
    def cache(self) -> Path:
        return self._hidden(CACHE)

    def kept(self, base: int | None) -> Path:
        """A journal rotated by the save that made document ``base``'s successor, kept until
        that document is on disk."""
        return self._hidden(f".kept-{base or 0:08d}{JOURNAL}")

    def segment(self, base: int | None) -> Path:
        """A journal rotated by a save, kept for a mirror process reading it."""
        return self._hidden(f".seg-{base or 0:08d}{JOURNAL}")

    def kept_journals(self) -> list[tuple[int, Path]]:
        """``(base, path)`` of the kept journals, oldest first."""
        return self._numbered(".kept-")

    def segments(self) -> list[tuple[int, Path]]:
        """``(base, path)`` of the mirror segments, oldest first."""
        return self._numbered(".seg-")

    def _numbered(self, tag: str) -> list[tuple[int, Path]]:
        found = []
        for path in self.folder.glob(f".{self.stem}{tag}*{JOURNAL}"):
            try:
                found.append((int(path.name[len(self.stem) + 1 + len(tag) : -len(JOURNAL)]), path))
            except ValueError:
                continue
        return sorted(found)

    @property
    def diff(self) -> Path:
        """The code diff the run started from (a dirty git tree), see ``runtime.provenance``."""
        return self._hidden(".diff")

    def mirror_state(self, sink: str) -> Path:
        return self._hidden(f".{sink}{_MIRROR_STATE}")

    def mirror_lock(self, sink: str) -> Path:
        return self._hidden(f".{sink}{_MIRROR_STATE}.lock")

    def mirror_log(self, sink: str) -> Path:
        return self._hidden(f".{sink}-mirror.log")

    def mirror_start(self, sink: str) -> Path:
        return self._hidden(f".{sink}-mirror-start.json")

    def rank_system(self, rank: int) -> Path:
        """System-metrics samples of another rank of the job (see the table)."""
        return self._hidden(f"{_RANK_SYSTEM}{int(rank)}{JOURNAL}")

    def rank_systems(self) -> list[tuple[int, Path]]:
        """``(rank, path)`` of every other rank's samples file, by rank."""
        found = []
        prefix = len(self.stem) + 1 + len(_RANK_SYSTEM)
        for path in self.folder.glob(f".{self.stem}{_RANK_SYSTEM}*{JOURNAL}"):
            try:
                found.append((int(path.name[prefix : -len(JOURNAL)]), path))
            except ValueError:
                continue
        return sorted(found)

    def mirror_states(self) -> dict[str, Path]:
        """Sink name -> its state file, for every mirror that left one."""
        found = {}
        for path in self.folder.glob(f".{self.stem}.*{_MIRROR_STATE}"):
            found[path.name[len(self.stem) + 2 : -len(_MIRROR_STATE)]] = path
        return found

    def mirror_files(self, sink: str) -> list[Path]:
        """Every file a mirror process of ``sink`` may leave."""
        return [
            self.mirror_state(sink),
            self.mirror_lock(sink),
            self.mirror_log(sink),
            self.mirror_start(sink),
        ]

    def temps(self) -> Iterator[Path]:
        """Temporary files of this run's writers (``.RUN.*.tmp-PID...``)."""
        for temp in self.folder.glob(f".{self.stem}.*.tmp-*"):
            if _TEMP.search(temp.name):
                yield temp

    def all_files(self) -> list[Path]:
        """Every file of the run that exists now (document, journals, hidden files)."""
        found = [p for p in (self.document, self.journal) if p.exists()]
        found += sorted(p for p in self.folder.glob(f".{self.stem}.*") if p.is_file())
        return found


def study_storage(log_dir: Path, study: str) -> Path:
    """The default storage of the Optuna study ``study`` in ``log_dir``: Optuna's journal
    file (never a run: its suffix is neither a document's nor a journal's)."""
    return Path(log_dir) / f"{safe_name(study)}{STUDY_STORAGE}"


TRASH = ".trash"


def trash_dir(log_dir: Path) -> Path:
    """The folder deleted runs are moved into (inside the log directory)."""
    return Path(log_dir) / TRASH


def trash_slots(log_dir: Path) -> list[tuple[str, Path]]:
    """``(run id, folder)`` of every run in the trash: ``.trash/RUN`` or ``.trash/RUN~N``
    (real folders only: a link in the trash is never followed)."""
    found = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in sorted(os.scandir(trash_dir(log_dir)), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                found.append((entry.name.split("~", 1)[0], Path(entry.path)))
    return found


def new_trash_slot(log_dir: Path, stem: str) -> Path:
    """A folder of the trash no run uses yet, for run ``stem`` (not created)."""
    base = trash_dir(log_dir)
    for n in range(1, 10_000):
        slot = base / (stem if n == 1 else f"{stem}~{n}")
        if not os.path.lexists(slot):
            return slot
    raise RuntimeError(f"no free folder for {stem!r} in {base}")


def temp_writer_pid(path: Path) -> int | None:
    """The pid in a temporary file's name (see :func:`temp_path`), or None."""
    found = _TEMP.search(path.name)
    return int(found.group(1)) if found else None


def is_run_file(path: Path) -> bool:
    """Whether ``path`` names a run (a document or a journal, not a hidden file)."""
    return not path.name.startswith(".") and path.suffix in (DOCUMENT, JOURNAL)


def run_files(log_dir: Path) -> list[Path]:
    """One path per run in ``log_dir``: its document, or its journal when never saved.
    Only regular files count (a FIFO or a device named ``*.json`` is no run)."""
    stems: dict[str, Path] = {}
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in sorted(os.scandir(log_dir), key=lambda e: e.name):
            path = Path(entry.path)
            if not is_run_file(path):
                continue
            try:
                regular = entry.is_file(follow_symlinks=True)
            except OSError:
                continue
            if not regular:
                continue
            if path.suffix == DOCUMENT or path.stem not in stems:
                stems[path.stem] = path
    return sorted(stems.values())


def claim_stem(log_dir: Path, name: str, when: datetime) -> str:
    """Reserve a unique file stem by creating its journal exclusively."""
    base = f"experiment_{safe_name(name)}_{when:%Y%m%d_%H%M%S}"
    for n in range(1, 10_000):
        stem = base if n == 1 else f"{base}_{n}"
        files = RunFiles(log_dir, stem)
        if files.document.exists():
            continue
        try:
            fd = os.open(files.journal, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.close(fd)
        return stem
    raise RuntimeError(f"could not find a free file name for {name!r} in {log_dir}")
