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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..core.config import ExperimentConfig
from ..core.errors import UsageError
from ..core.log import ExperimentLog
from ..core.progress import progress
from ..store.codec import gc_paused
from ..store.document import write_document
from ..store.layout import inside
from .keys import RowMapper
from .runs import (
    apply_summary,
    attributes,
    compute_of,
    config_of,
    history_to_log,
    local_run_id,
)
from .wandb_file import read_records, reader_name

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


def _project_of(file: Path) -> tuple[str, str]:
    """(entity, project) as the file's first run record names them."""
    records = read_records(file)
    try:
        for record in records:
            if record.get("type") == "run":
                run = record.get("run") or {}
                return str(run.get("entity") or ""), str(run.get("project") or "")
    finally:
        records.close()  # type: ignore[attr-defined]
    return "", ""


def _split_by_project(files: list[Path]) -> dict[tuple[str, str], list[Path]]:
    """One run id in two projects is two runs: keep their sessions apart."""
    if len(files) == 1:
        return {("", ""): files}
    split: dict[tuple[str, str], list[Path]] = {}
    for file in files:
        split.setdefault(_project_of(file), []).append(file)
    return split


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

    def history(self, files: Iterable[Path]) -> Iterator[dict[str, Any]]:
        """The history items of every file; the other records update this object."""
        last_step = -1
        for file in files:
            shift: int | None = None
            for record in read_records(file):
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
    run = _OfflineRun(run_id)
    log = ExperimentLog(config=ExperimentConfig())
    with gc_paused():
        keys = history_to_log(log, run.history(files), RowMapper(key_aliases))
    meta = run.meta
    log.config = config_of(
        run.config, meta.get("display_name") or run_id, config_aliases, str(files[-1])
    )
    log.compute = compute_of(run.config)
    log.start_time = meta.get("start_time")
    log.notes = meta.get("notes") or ""
    log.status = "finished" if run.exit_code == 0 else "unfinished"
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
    return log


def import_runs(
    path: str | Path,
    *,
    save_dir: str | Path | None = None,
    key_aliases: Mapping[str, Iterable[str]] | None = None,
    config_aliases: Mapping[str, str] | None = None,
    show_progress: bool | None = None,
) -> list[ExperimentLog]:
    """Read offline W&B runs under ``path`` into ``ExperimentLog`` objects.

    With ``save_dir`` each run is written there as ``wandb_<entity>_<project>_<id>.json``
    (file names made safe; nothing is written outside ``save_dir``); importing again
    overwrites the same files. An unreadable file raises :class:`LogFormatError` naming it,
    after the runs before it were saved.
    """
    groups = find_run_files(path)
    reader_name()  # no reader in this wandb: say so before anything else
    logs: list[ExperimentLog] = []
    items = [
        (run_id, files)
        for run_id, by_id in groups.items()
        for files in _split_by_project(by_id).values()
    ]
    for run_id, files in progress(items, len(items), f"Importing {path}", enabled=show_progress):
        log = file_to_log(run_id, files, key_aliases=key_aliases, config_aliases=config_aliases)
        if save_dir is not None:
            folder = Path(save_dir)
            target = inside(folder, f"{log.run_id}.json")
            folder.mkdir(parents=True, exist_ok=True)
            log.source = str(target)
            write_document(target, log, 1)
        logs.append(log)
    return logs


#: The name ``cs336_basics`` exports it under.
import_wandb_runs = import_runs
