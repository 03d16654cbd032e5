"""Pull W&B runs back into ``ExperimentLog`` objects (the W&B public API: GraphQL).

History comes from ``run.scan_history()`` (every row, every page), never the sampled
``run.history()``. Rows, config and summary are mapped by :mod:`.runs` with the key tables
of :mod:`.keys`, as import maps offline files, so a run mirrored by this project comes back
equal to the local one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..core import env
from ..core.errors import WandbPullError
from ..core.log import ExperimentLog
from ..core.progress import progress
from ..store.codec import gc_paused
from ..store.document import write_document
from ..store.layout import inside
from .client import bounded, import_wandb
from .keys import RowMapper
from .runs import (
    apply_summary,
    attributes,
    compute_of,
    config_of,
    history_to_log,
    iso,
    local_run_id,
)


def run_to_log(
    run: Any,
    *,
    key_aliases: Mapping[str, Iterable[str]] | None = None,
    config_aliases: Mapping[str, str] | None = None,
    page_size: int = 1000,
) -> ExperimentLog:
    """Convert one ``wandb.apis.public.Run`` into an ``ExperimentLog`` (whole history)."""
    config = config_of(dict(run.config or {}), run.name or run.id, config_aliases, str(run.id))
    state = str(getattr(run, "state", "") or "")
    log = ExperimentLog(
        config=config,
        start_time=iso(getattr(run, "created_at", None)),
        notes=getattr(run, "notes", None) or "",
        status="finished"
        if state == "finished"
        else "running"
        if state == "running"
        else "unfinished",
    )
    log.compute = compute_of(dict(run.config or {}))
    with gc_paused():
        keys = history_to_log(log, run.scan_history(page_size=page_size), RowMapper(key_aliases))
    apply_summary(log, dict(getattr(run, "summary", {}) or {}), keys)
    attributes(
        log, getattr(run, "tags", None), getattr(run, "group", None), getattr(run, "job_type", None)
    )
    if log.status == "finished":
        log.end_time = iso(getattr(run, "heartbeat_at", None)) or log.start_time
    entity, project = getattr(run, "entity", None), getattr(run, "project", None)
    log.run_id = local_run_id(entity, project, run.id)
    log.mirrors["wandb"] = {
        "run_id": run.id,
        "url": getattr(run, "url", None),
        "entity": entity,
        "project": project,
        "state": state,
        "status": "pulled",
        "through_iteration": log.metrics_history[-1].iteration if log.metrics_history else -1,
    }
    return log


def _filters(run_ids, names, filters, state) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if filters:
        clauses.append(dict(filters))
    if run_ids:
        clauses.append({"name": {"$in": list(run_ids)}})
    if names:
        clauses.append({"display_name": {"$in": list(names)}})
    if state:
        clauses.append({"state": state})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _explain(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def pull_runs(
    path: str,
    *,
    run_ids: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
    filters: Mapping[str, Any] | None = None,
    state: str | None = None,
    api: Any = None,
    timeout: float | None = None,
    key_aliases: Mapping[str, Iterable[str]] | None = None,
    config_aliases: Mapping[str, str] | None = None,
    save_dir: str | Path | None = None,
    show_progress: bool | None = None,
    per_page: int = 50,
) -> list[ExperimentLog]:
    """Pull the runs of ``"entity/project"`` (or ``"project"`` with ``WANDB_ENTITY``).

    ``run_ids``/``names``/``state``/``filters`` (a W&B filter dict) narrow the set. With
    ``save_dir`` every pulled run is written there as a local JSON document
    (``wandb_<entity>_<project>_<id>.json``); pulling again overwrites the same files. A run
    that fails half-way raises :class:`WandbPullError` and nothing of it is saved.
    """
    if not isinstance(path, str) or not path.strip() or path.count("/") > 1:
        raise ValueError(f"path: expected 'entity/project' or 'project', got {path!r}")
    wandb = import_wandb()
    seconds = timeout or int(env.get(env.WANDB_HTTP_TIMEOUT) or 20)
    deadline = 2 * seconds + 1  # a request and one retry, whatever the release retries
    try:
        api = api or bounded(lambda: wandb.Api(timeout=seconds), deadline, "connecting")
    except WandbPullError:
        raise
    except Exception as exc:
        raise WandbPullError(
            f"connecting to W&B failed ({_explain(exc)}); check WANDB_API_KEY and WANDB_BASE_URL"
        ) from exc
    query = _filters(run_ids, names, filters, state)

    def listing() -> tuple[Any, int]:
        runs = api.runs(path, filters=query, per_page=per_page)
        return runs, len(runs)

    try:
        runs, total = bounded(listing, deadline, f"listing runs of {path!r}")
    except WandbPullError:
        raise
    except Exception as exc:
        raise WandbPullError(f"listing runs of {path!r} failed ({_explain(exc)})") from exc
    logs: list[ExperimentLog] = []
    iterator = iter(runs)
    for _ in progress(range(total), total, f"Pulling {path}", enabled=show_progress):
        try:
            run = next(iterator)
        except StopIteration:
            break
        except Exception as exc:
            raise WandbPullError(f"listing runs of {path!r} failed ({_explain(exc)})") from exc
        try:
            log = run_to_log(run, key_aliases=key_aliases, config_aliases=config_aliases)
        except Exception as exc:
            raise WandbPullError(
                f"reading run {getattr(run, 'id', '?')} of {path!r} failed ({_explain(exc)}); "
                "nothing of it was saved"
            ) from exc
        if save_dir is not None:
            target = inside(Path(save_dir), f"{log.run_id}.json")
            target.parent.mkdir(parents=True, exist_ok=True)
            log.source = str(target)
            write_document(target, log, 1)
        logs.append(log)
    return logs
