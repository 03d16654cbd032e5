"""Import runs from wandb's offline files (``wandb/offline-run-*/run-*.wandb``), no server.

``PATH`` may be one ``.wandb`` file, one run folder, or any folder holding them (a ``wandb``
directory, a project); files are found recursively. The files of one run id (an offline run
resumed several times writes one folder per session) become one local run, replayed in the
order they were written; W&B's ``_step``, which restarts at 0 in each session, is shifted
to continue. Records are read with wandb's own reader (:mod:`.wandb_file`) and mapped
exactly as pull maps a run from the server (:mod:`.pull`): the same key and config alias
tables, the same replay rules, the same summary and the same local run id
(``wandb_<entity>_<project>_<id>``), so importing a run and pulling it after ``wandb sync``
write the same file. Importing again overwrites it.

Each file is read once, by one reader process (a run id with sessions in several files
first reads each file up to its run record, which names the project, and goes on from
there). A file wandb's reader could read only in part (corrupt data skipped, a file cut
short) gives a *partial* run: status ``unfinished``, ``mirrors.wandb.status`` ``"partial"``
with the reader's complaints as ``error``, and one warning on the ``cs336_basics`` logger.
An empty file, or one without a single record, is refused (``LogFormatError`` naming it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..core.config import ExperimentConfig
from ..core.errors import LogFormatError, UsageError
from ..core.log import ExperimentLog
from ..core.progress import progress
from ..store.codec import gc_paused
from ..store.document import write_document
from ..store.layout import RunFiles, inside
from .keys import RowMapper
from .runs import (
    apply_summary,
    attributes,
    compute_of,
    config_of,
    history_to_log,
    local_run_id,
    mirrored_local_run,
)
from .wandb_file import read_records, reader_name

logger = logging.getLogger("cs336_basics")
_RUN_FILE = re.compile(r"^run-(?P<id>.+)\.wandb$")


def find_run_files(path: str | Path) -> dict[str, list[Path]]:
    """``.wandb`` files under ``path`` grouped by run id, each group in the order written."""
    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.rglob("run-*.wandb"))
    else:
        raise UsageError(f"import {path}: no such file or folder")
    groups: dict[str, list[Path]] = {}
    for file in files:
        match = _RUN_FILE.match(file.name)
        if match is None:
            raise UsageError(f"import {file}: expected a run-<id>.wandb file")
        groups.setdefault(match["id"], []).append(file)
    if not groups:
        raise UsageError(f"import {path}: no run-*.wandb file in this folder")
    # offline-run-<YYYYmmdd_HHMMSS>-<id>: the folder name orders a run's sessions
    return {
        run_id: sorted(group, key=lambda f: (f.parent.name, f.name))
        for run_id, group in groups.items()
    }


class _FileReader:
    """The records of one ``.wandb`` file, from one reader process: :meth:`peek` reads up to
    the run record (to learn the project) and keeps what it read; iterating goes on from
    the start without reading anything twice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.project: tuple[str, str] = ("", "")
        self.count = 0
        self._records = read_records(path, self.problems)
        self._head: list[dict[str, Any]] = []

    def peek(self) -> tuple[str, str]:
        """(entity, project) as the file's run record names them (the run record comes
        before any history; none: ``("", "")``)."""
        for record in self._records:
            self._head.append(record)
            kind = record.get("type")
            if kind == "run":
                run = record.get("run") or {}
                self.project = (str(run.get("entity") or ""), str(run.get("project") or ""))
                break
            if kind == "history":
                break
        return self.project

    def __iter__(self) -> Iterator[dict[str, Any]]:
        head, self._head = self._head, []
        for record in head:
            self.count += 1
            yield record
        for record in self._records:
            self.count += 1
            yield record
        if self.count == 0:
            raise LogFormatError(
                f"{self.path}: not a single W&B record in it (the run wrote nothing): "
                "nothing to import"
            )

    def close(self) -> None:
        self._records.close()  # stops its reader process


def _split_by_project(readers: list[_FileReader]) -> list[list[_FileReader]]:
    """One run id in two projects is two runs: keep their sessions apart (each file is
    read up to its run record; the rest is read later by the same reader)."""
    if len(readers) == 1:
        return [readers]
    split: dict[tuple[str, str], list[_FileReader]] = {}
    for reader in readers:
        split.setdefault(reader.peek(), []).append(reader)
    return list(split.values())


class _OfflineRun:
    """What the records of one run say besides history (filled while history streams)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.meta: dict[str, Any] = {}
        self.config: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self.exit_code: int | None = None
        self.runtime = 0.0

    def _merge(self, target: dict[str, Any], body: Mapping[str, Any]) -> None:
        target.update(body.get("update") or {})
        for key in body.get("remove") or ():
            target.pop(key, None)

    def history(self, readers: Iterable[_FileReader]) -> Iterator[dict[str, Any]]:
        """The history items of every file; the other records update this object."""
        last_step = -1
        for reader in readers:
            shift: int | None = None
            for record in reader:
                kind = record.get("type")
                if kind == "history":
                    item = record["history"].get("item") or {}
                    step = item.get("_step")
                    if type(step) is int:
                        if shift is None:  # a resumed session restarts W&B's step at 0
                            shift = last_step + 1 if step <= last_step else 0
                        item["_step"] = step = step + shift
                        last_step = max(last_step, step)
                    yield item
                elif kind == "run":
                    run = record["run"]
                    self._merge(self.config, run.get("config") or {})
                    self.meta.update({k: v for k, v in run.items() if k != "config" and v})
                elif kind == "config":
                    self._merge(self.config, record["config"])
                elif kind == "summary":
                    self._merge(self.summary, record["summary"])
                    runtime = self.summary.get("_runtime")
                    if isinstance(runtime, (int, float)):  # some updates reset it to 0
                        self.runtime = max(self.runtime, runtime)
                elif kind == "exit":
                    self.exit_code = int(record["exit"].get("exit_code") or 0)


def _end_time(start: str | None, runtime: Any) -> str | None:
    if not start or not isinstance(runtime, (int, float)):
        return start
    try:
        begun = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        return start
    return (begun + timedelta(seconds=float(runtime))).isoformat()


def file_to_log(
    run_id: str,
    files: list[Path],
    *,
    key_aliases: Mapping[str, Iterable[str]] | None = None,
    config_aliases: Mapping[str, str] | None = None,
) -> ExperimentLog:
    """One run's ``.wandb`` files (its sessions, in order) -> an ``ExperimentLog``."""
    readers = [_FileReader(file) for file in files]
    try:
        return _to_log(run_id, readers, key_aliases, config_aliases)
    finally:
        for reader in readers:
            reader.close()


def _to_log(
    run_id: str,
    readers: list[_FileReader],
    key_aliases: Mapping[str, Iterable[str]] | None,
    config_aliases: Mapping[str, str] | None,
) -> ExperimentLog:
    files = [reader.path for reader in readers]
    run = _OfflineRun(run_id)
    log = ExperimentLog(config=ExperimentConfig())
    with gc_paused():
        keys = history_to_log(log, run.history(readers), RowMapper(key_aliases))
    meta = run.meta
    log.config = config_of(
        run.config, meta.get("display_name") or run_id, config_aliases, str(files[-1])
    )
    log.compute = compute_of(run.config)
    log.start_time = meta.get("start_time")
    log.notes = meta.get("notes") or ""
    problems = [f"{reader.path.name}: {p}" for reader in readers for p in reader.problems]
    partial = "; ".join(problems)
    if len(partial) > 1000:
        partial = partial[:997] + "..."
    # A run read in part did not finish as far as anyone can tell from here.
    log.status = "finished" if run.exit_code == 0 and not problems else "unfinished"
    apply_summary(log, {**run.summary, "_runtime": run.runtime}, keys)
    attributes(log, meta.get("tags"), meta.get("run_group"), meta.get("job_type"))
    if log.finished:
        log.end_time = _end_time(log.start_time, run.runtime)
    entity, project = meta.get("entity") or None, meta.get("project") or None
    log.run_id = local_run_id(entity, project, run_id)
    state = "finished" if run.exit_code == 0 else "crashed" if run.exit_code else "running"
    log.mirrors["wandb"] = {
        "run_id": run_id,
        "url": None,
        "entity": entity,
        "project": project,
        "state": state,
        "status": "imported",
        "files": [str(f) for f in files],
        "tags": list(meta.get("tags") or []),
        "group": meta.get("run_group"),
        "job_type": meta.get("job_type"),
        "through_iteration": log.metrics_history[-1].iteration if log.metrics_history else -1,
    }
    mirror_of = mirrored_local_run(run.config)
    if mirror_of:
        log.mirrors["wandb"]["mirror_of"] = mirror_of
    if problems:
        log.mirrors["wandb"]["status"] = "partial"
        log.mirrors["wandb"]["error"] = f"wandb's reader could not read it all: {partial}"
        logger.warning(
            "import %s: partial: wandb's reader could not read it all (%s); imported %d "
            "rows, the run is marked unfinished and its W&B mirror status 'partial'",
            files[-1],
            partial,
            len(log.metrics_history),
        )
    return log


def import_runs(
    path: str | Path,
    *,
    save_dir: str | Path | None = None,
    key_aliases: Mapping[str, Iterable[str]] | None = None,
    config_aliases: Mapping[str, str] | None = None,
    show_progress: bool | None = None,
    force: bool = False,
) -> list[ExperimentLog]:
    """Read offline W&B runs under ``path`` into ``ExperimentLog`` objects.

    With ``save_dir`` each run is written there as ``wandb_<entity>_<project>_<id>.json``
    (file names made safe; nothing is written outside ``save_dir``); importing again
    overwrites the same files. A W&B run that is this project's own mirror of a run
    ``save_dir`` holds (its config names the local run: ``cs336_local_run``) is that run
    again: it is skipped, said in one line on the logger, unless ``force``. An unreadable
    file raises :class:`LogFormatError` naming it, after the runs before it were saved.
    """
    groups = find_run_files(path)
    reader_name()  # no reader in this wandb: say so before anything else
    logs: list[ExperimentLog] = []
    items = list(groups.items())
    for run_id, files in progress(items, len(items), f"Importing {path}", enabled=show_progress):
        readers = [_FileReader(file) for file in files]
        try:
            for group in _split_by_project(readers):
                log = _to_log(run_id, group, key_aliases, config_aliases)
                mirror_of = log.mirrors["wandb"].get("mirror_of")
                if save_dir is not None and mirror_of and not force:
                    local = RunFiles(Path(save_dir), str(mirror_of))
                    if local.document.exists() or local.journal.exists():
                        logger.warning(
                            "%s: W&B run %s mirrors the local run %s, which %s holds: "
                            "skipped (force=True / --force imports it as a run of its own)",
                            group[0].path,
                            run_id,
                            mirror_of,
                            save_dir,
                        )
                        continue
                if save_dir is not None:
                    folder = Path(save_dir)
                    target = inside(folder, f"{log.run_id}.json")
                    folder.mkdir(parents=True, exist_ok=True)
                    log.source = str(target)
                    write_document(target, log, 1)
                logs.append(log)
        finally:
            for reader in readers:
                reader.close()
    return logs


#: The name ``cs336_basics`` exports it under.
import_wandb_runs = import_runs
