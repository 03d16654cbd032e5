"""Upload an existing local run to W&B: how a run trained offline or through an outage,
or one whose live mirror failed, gets there.

Idempotent: a run whose mirror is recorded as complete is not sent again. A partial mirror
whose W&B run was ended cleanly (training crashed or stopped, the mirror was stopped) is
completed: the same W&B run is resumed and gets only the rows it lacks, then the summary.
Where what W&B holds is unknown (the mirror process died, rows were dropped) or with
``force=True``, the whole history goes to a new W&B run (the old id is kept under
``mirrors["wandb"]["replaced"]``).
The result is recorded in the local files.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

from ..tracking.errors import PushError
from ..tracking.mirror_process import FINAL_STATES
from ..tracking.progress import progress
from ..tracking.records import ExperimentLog
from ..tracking.storage import (
    JOURNAL_SUFFIX,
    load_run,
    mirror_state_path,
    pid_alive,
    write_document,
)
from .client import new_run_id
from .sink import WandbSink


def mirror_is_complete(log: ExperimentLog) -> bool:
    """Whether the recorded W&B mirror holds every row of the local run."""
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
) -> dict[str, Any]:
    """Push the local run at ``run`` (its .json or .jsonl) to W&B; returns the mirror state.

    A run whose mirror ended cleanly but short (the training crashed, stopped, or the mirror
    was stopped) continues the same W&B run with only the rows it lacks. A run never
    mirrored, a disabled mirror, a mirror that died or dropped rows (what W&B holds is then
    unknown), or ``force=True`` gets a new W&B run with the whole history.
    """
    path = Path(run)
    log, save_id = load_run(path)
    if log.status == "running":
        raise PushError(
            f"{path}: the run is still being written by a live process; push it after it ends"
        )
    previous = log.mirrors.get("wandb") or {}
    if _mirror_still_sending(previous):
        raise PushError(
            f"{path}: its W&B mirror is still sending (pid {previous.get('pid')}); "
            "push after it ends"
        )
    if mirror_is_complete(log) and not force:
        return dict(previous, pushed=False)
    sink = WandbSink(
        project=project or previous.get("project"),
        entity=entity or previous.get("entity"),
        mode=mode,
        in_process=True,
    )
    # Continue the recorded W&B run only where what it holds is known: it was ended cleanly
    # (a killed mirror can lose rows it had handed to wandb) and no row was dropped.
    resume = (
        bool(previous.get("run_id"))
        and bool(previous.get("durable"))
        and not previous.get("dropped_events")
        and not force
    )
    if resume:
        sink.continue_run(previous, log)
        rows = sink.take_backlog()
    else:
        sink.run_id = new_run_id()
        rows = list(log.metrics_history)
    sink.start(log)
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
    document = Path(log.source or path).with_suffix(".json")
    write_document(document, log, save_id + 1)
    with contextlib.suppress(FileNotFoundError):
        document.with_suffix(JOURNAL_SUFFIX).unlink()  # the document now holds everything
    with contextlib.suppress(FileNotFoundError):
        mirror_state_path(document, "wandb").unlink()  # superseded by the document
    return dict(state, pushed=True)
