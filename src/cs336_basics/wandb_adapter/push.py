"""Upload an existing local run to W&B: how a run trained offline or through an outage,
or one whose live mirror failed, gets there.

Idempotent: a run whose mirror is recorded as complete on W&B is not sent again. A partial
mirror whose W&B run was ended cleanly (training crashed or stopped, the mirror was
stopped) is completed: the same W&B run is resumed and gets only the rows it lacks, then
the summary. A run mirrored only offline (no login, ``WANDB_MODE=offline``) is uploaded
whole under its W&B id, or, when the push itself is offline, the folder ``wandb sync``
uploads is named. Where what W&B holds is unknown (the mirror process died, rows were
dropped) or with ``force=True``, the whole history goes to a new W&B run (the old id is kept
under ``mirrors["wandb"]["replaced"]``).

The push holds the run's lock while it works (a job resuming the run meanwhile gets
``RunInUseError``), and records the result in the run's document.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

from ..core import env
from ..core.errors import PushError, RunInUseError
from ..core.log import ExperimentLog
from ..core.progress import progress
from ..runtime.mirrors import FINAL_STATES, remove_orphan_segments
from ..store.document import recover, write_document
from ..store.layout import RunFiles
from ..store.load import load_run
from ..store.lock import RunLock, pid_alive
from .client import new_run_id
from .sink import WandbSink


@contextlib.contextmanager
def _environment(**values: str) -> Any:
    """Environment variables set for the block, then as they were."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def on_wandb(state: dict[str, Any]) -> bool:
    """Whether a mirror state describes a W&B run on the server (not an offline folder)."""
    return state.get("mode") not in ("offline", "disabled", "dryrun") and not state.get("fallback")


def mirror_is_complete(log: ExperimentLog) -> bool:
    """Whether the recorded W&B mirror holds every row of the local run (on W&B or in an
    offline folder)."""
    state = log.mirrors.get("wandb") or {}
    if state.get("status") != "finished" or not state.get("run_id"):
        return False
    last = log.metrics_history[-1].iteration if log.metrics_history else -1
    return int(state.get("through_iteration", -1)) >= last


def _mirror_still_sending(state: dict[str, Any]) -> bool:
    """A mirror process that has not recorded an end and whose pid still runs here."""
    return state.get("status") not in FINAL_STATES and pid_alive(
        state.get("pid"), socket.gethostname()
    )


def push_run(
    run: str | Path,
    *,
    project: str | None = None,
    entity: str | None = None,
    mode: str | None = None,
    force: bool = False,
    show_progress: bool | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Push the local run at ``run`` (its .json or .jsonl) to W&B; returns the mirror state
    with ``pushed`` (whether anything was sent) and, when nothing was, ``reason``.

    A run whose mirror ended cleanly but short (the training crashed, stopped, or the mirror
    was stopped) continues the same W&B run with only the rows it lacks. A run mirrored
    only offline goes up whole under its W&B id. A run never mirrored, a disabled mirror, a
    mirror that died or dropped rows (what W&B holds is then unknown), or ``force=True``
    gets a new W&B run with the whole history. wandb's own output is silenced unless
    ``verbose``.
    """
    files = RunFiles.of(run)
    try:
        lock = RunLock.acquire(files, purpose="cs336-exp push")
    except RunInUseError as exc:
        raise PushError(f"{run}: {exc}; push it after that ends") from exc
    try:
        recover(files)  # a save cut short in the middle of appending
        with contextlib.ExitStack() as quiet:
            if not verbose:  # older wandb releases talk even with settings(silent=True)
                quiet.enter_context(_environment(WANDB_SILENT="true"))
            return _push(files, project, entity, mode, force, show_progress, verbose)
    finally:
        lock.release()


def _push(
    files: RunFiles,
    project: str | None,
    entity: str | None,
    mode: str | None,
    force: bool,
    show_progress: bool | None,
    verbose: bool,
) -> dict[str, Any]:
    loaded = load_run(files.document)
    log, save_id = loaded.log, loaded.save_id
    if log.status == "running":
        raise PushError(
            f"{files.document}: the run is still being written by a live process; push it "
            "after it ends"
        )
    previous = log.mirrors.get("wandb") or {}
    if _mirror_still_sending(previous):
        raise PushError(
            f"{files.document}: its W&B mirror is still sending (pid {previous.get('pid')}); "
            "push after it ends"
        )
    requested = mode or env.get(env.WANDB_MODE) or "online"
    offline_push = requested in ("offline", "dryrun")
    if mirror_is_complete(log) and not force:
        if on_wandb(previous):
            return dict(previous, pushed=False, reason="already on W&B")
        if offline_push:
            folder = previous.get("sync_dir") or "its offline folder"
            return dict(
                previous,
                pushed=False,
                reason=f"already written offline to {folder}; upload it with "
                f"`wandb sync {folder}`, or push it online (--mode online) once logged in",
            )
    init_kwargs: dict[str, Any] = {} if verbose else {"settings": {"silent": True}}
    sink = WandbSink(
        project=project or previous.get("project"),
        entity=entity or previous.get("entity"),
        mode=mode,
        in_process=True,
        init_kwargs=init_kwargs,
        offline_fallback=False,
    )
    # Continue the recorded W&B run only where what it holds is known: it was ended cleanly
    # (a killed mirror can lose rows it had handed to wandb) and no row was dropped.
    offline_only = bool(previous.get("run_id")) and not on_wandb(previous)
    resume = (
        bool(previous.get("run_id"))
        and bool(previous.get("durable"))
        and not previous.get("dropped_events")
        and not force
    )
    if offline_only and not force and not offline_push:
        sink.run_id = str(previous["run_id"])  # not on the server yet: all of it, same id
        rows = list(log.metrics_history)
    elif resume:
        sink.continue_run(previous, log)
        rows = sink.take_backlog()
    else:
        sink.run_id = new_run_id()
        rows = list(log.metrics_history)
    try:
        sink.start(log)
    except Exception as exc:
        raise PushError(
            f"{files.document}: W&B did not accept the run ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}); check "
            "`wandb login` and the network"
            + (
                f", or upload the offline copy with `wandb sync {previous['sync_dir']}`"
                if previous.get("sync_dir")
                else ""
            )
        ) from exc
    try:
        sink.replay(progress(rows, len(rows), "Pushing rows", enabled=show_progress))
        sink.finish(log)
    except BaseException:
        sink.close()
        raise
    state = sink.state()
    state["through_iteration"] = log.last_iteration if log.metrics_history else -1
    if previous.get("run_id") and previous.get("run_id") != state["run_id"]:
        state["replaced"] = previous["run_id"]
    state["pushed_rows"] = len(rows)
    log.mirrors["wandb"] = state
    write_document(files.document, log, save_id + 1)
    with contextlib.suppress(FileNotFoundError):
        files.journal.unlink()  # the document now holds everything
    for leftover in (*files.mirror_files("wandb"),):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()  # superseded by the document
    remove_orphan_segments(files)
    return dict(state, pushed=True)
