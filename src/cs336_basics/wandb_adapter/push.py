"""Upload an existing local run to W&B: how a run trained offline or through an outage,
or one whose live mirror failed, gets there.

Idempotent: a run whose mirror is recorded as complete is not sent again. A partial mirror
(the sink failed, fell behind, or the process died) is replaced by a new W&B run holding the
whole history; the partial one is left as it was (its id is kept under
``mirrors["wandb"]["replaced"]``). The result is recorded in the local files.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ..tracking.errors import PushError
from ..tracking.progress import progress
from ..tracking.records import ExperimentLog
from ..tracking.storage import JOURNAL_SUFFIX, load_run, write_document
from .client import new_run_id
from .sink import WandbSink


def mirror_is_complete(log: ExperimentLog) -> bool:
    """Whether the recorded W&B mirror holds every row of the local run."""
    state = log.mirrors.get("wandb") or {}
    if state.get("status") != "finished" or not state.get("run_id"):
        return False
    last = log.metrics_history[-1].iteration if log.metrics_history else -1
    return int(state.get("through_iteration", -1)) >= last


def push_run(
    run: str | Path,
    *,
    project: str | None = None,
    entity: str | None = None,
    mode: str | None = None,
    force: bool = False,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Push the local run at ``run`` (its .json or .jsonl) to W&B; returns the mirror state."""
    path = Path(run)
    log, save_id = load_run(path)
    if log.status == "running":
        raise PushError(
            f"{path}: the run is still being written by a live process; push it after it ends"
        )
    if mirror_is_complete(log) and not force:
        return dict(log.mirrors["wandb"], pushed=False)
    previous = log.mirrors.get("wandb") or {}
    sink = WandbSink(
        project=project or previous.get("project"),
        entity=entity or previous.get("entity"),
        mode=mode,
        run_id=new_run_id(),
    )
    sink.start(log)
    history = log.metrics_history
    try:
        sink.replay(progress(history, len(history), "Pushing rows", enabled=show_progress))
        sink.finish(log)
    except BaseException:
        sink.close()
        raise
    state = sink.state()
    state["through_iteration"] = history[-1].iteration if history else -1
    if previous.get("run_id") and previous.get("run_id") != state["run_id"]:
        state["replaced"] = previous["run_id"]
    log.mirrors["wandb"] = state
    document = Path(log.source or path).with_suffix(".json")
    write_document(document, log, save_id + 1)
    with contextlib.suppress(FileNotFoundError):
        document.with_suffix(JOURNAL_SUFFIX).unlink()  # the document now holds everything
    return dict(state, pushed=True)
