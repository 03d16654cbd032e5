"""Pull W&B runs back into ``ExperimentLog`` objects, so they compare with local runs.

History comes from ``run.scan_history()`` (every row, every page), never the sampled
``run.history()``. Keys map back through the inverse of the sink's table
(:mod:`.keys`) first, then through :data:`KEY_ALIASES` for runs logged by other
scripts; unmapped metrics are kept in each row's ``extra``. Rows replay through the same
rules as a live run (an eval fills its iteration's row; a row at an earlier iteration
supersedes the later ones), so a run mirrored by this project comes back equal to the
local one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import fields as dataclass_fields
from datetime import datetime
from pathlib import Path
from typing import Any

from ..tracking import env
from ..tracking.codec import gc_paused
from ..tracking.errors import WandbPullError
from ..tracking.progress import progress
from ..tracking.records import (
    SUMMARY_FIELDS,
    TRAIN_FIELDS,
    ExperimentConfig,
    ExperimentLog,
    MetricsSnapshot,
    apply_eval,
    apply_metrics,
)
from ..tracking.storage import inside, safe_name, write_document
from ..tracking.values import NonFinite, wrap_float
from .client import bounded, import_wandb
from .keys import EXTRA_PREFIX, FIELD_TO_KEY

#: Keys other scripts use for each local field, tried after this project's own key.
FOREIGN_KEYS: dict[str, tuple[str, ...]] = {
    "iteration": ("iter", "_step"),
    "gradient_step": (
        "global_step",
        "train/global_step",
        "trainer/global_step",
        "step",
        "_step",
    ),
    "wallclock_time": ("_runtime",),
    "train_loss": ("train_loss", "loss", "training_loss"),
    "val_loss": (
        "val_loss",
        "eval/loss",
        "eval_loss",
        "valid/loss",
        "validation/loss",
        "validation_loss",
    ),
    "learning_rate": ("learning_rate", "lr", "train/learning_rate"),
    "tokens_per_sec": ("tokens_per_sec", "throughput"),
    "iter_time_ms": ("iter_time_ms",),
}
#: Local field -> W&B keys that may hold it, first match wins. The first is always the
#: sink's own key (the inverse of ``keys.FIELD_TO_KEY``), so both sides share one table.
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    field: (key, *FOREIGN_KEYS.get(field, ())) for field, key in FIELD_TO_KEY.items()
}
#: Foreign config key -> ExperimentConfig field.
CONFIG_ALIASES: dict[str, str] = {
    "lr": "max_learning_rate",
    "learning_rate": "max_learning_rate",
    "max_lr": "max_learning_rate",
    "min_lr": "min_learning_rate",
    "wandb_run_name": "experiment_name",
    "n_layers": "num_layers",
    "n_layer": "num_layers",
    "n_head": "num_heads",
    "n_heads": "num_heads",
    "n_embd": "d_model",
    "block_size": "context_length",
    "warmup_steps": "warmup_iters",
}
_INTERNAL = ("_step", "_runtime", "_timestamp", "_wandb")


def _number(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value if value - value == 0.0 else NonFinite(value)
    if kind is int:
        return float(value)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("nan", "infinity", "inf", "-infinity", "-inf"):
            return wrap_float(float(lowered.replace("infinity", "inf")))
        return None
    try:
        return wrap_float(float(value))
    except (TypeError, ValueError):
        return None


#: ExperimentConfig's numeric fields: a W&B value that is not a finite number (``"auto"``,
#: ``"3e-4"``, ``None``) is kept under ``wandb.<key>`` instead, so the run stays readable.
_NUMERIC_CONFIG = frozenset(
    f.name for f in dataclass_fields(ExperimentConfig) if type(f.default) in (int, float)
)


def _fits(target: str, value: Any) -> bool:
    if target not in _NUMERIC_CONFIG:
        return True
    return type(value) in (int, float) and math.isfinite(value)


def unwrap_config(raw: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """W&B config -> ExperimentConfig kwargs: drop internals, unwrap ``{"value": ...}``."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("_wandb"):
            continue
        if isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
            value = value["value"]
        target = aliases.get(key, key)
        if not _fits(target, value):
            out[f"wandb.{key}"] = value
            continue
        if target in out and target != key:
            out.setdefault(key, value)  # both present: keep the foreign key as extra
            continue
        out[target] = value
    return out


class RowMapper:
    """Turns one W&B history row into (fields, extra) with the alias table."""

    def __init__(self, aliases: Mapping[str, Iterable[str]] | None = None) -> None:
        table = {k: tuple(v) for k, v in (aliases or KEY_ALIASES).items()}
        self.aliases = table
        self.claimed = {key for keys in table.values() for key in keys}
        self._plans: dict[tuple[str, ...], Any] = {}

    def _plan(self, keys: tuple[str, ...]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        present = set(keys)
        fields = []
        for field, aliases in self.aliases.items():
            for key in aliases:
                if key in present:
                    fields.append((field, key))
                    break
        extra = [
            (key, key[len(EXTRA_PREFIX) :] if key.startswith(EXTRA_PREFIX) else key)
            for key in keys
            if key not in self.claimed and not key.startswith(_INTERNAL)
        ]
        return fields, extra

    def map(self, item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
        keys = tuple(item)
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._plans[keys] = self._plan(keys)
        field_plan, extra_plan = plan
        fields: dict[str, Any] = {}
        for field, key in field_plan:
            value = item[key]
            if value is not None:
                fields[field] = value
            else:  # a None under the preferred key: fall back to the next alias present
                for alt in self.aliases[field]:
                    if alt != key and item.get(alt) is not None:
                        fields[field] = item[alt]
                        break
        extra: dict[str, float] = {}
        for key, name in extra_plan:
            number = _number(item[key])
            if number is not None:  # media, tables, strings: not a curve
                extra[name] = number
        return fields, extra


def history_to_log(
    log: ExperimentLog, rows: Iterable[Mapping[str, Any]], mapper: RowMapper
) -> None:
    """Replay W&B history rows into ``log`` with the live tracker's rules."""
    fallback_iteration = 0
    for item in rows:
        fields, extra = mapper.map(item)
        it_value = _number(fields.get("iteration"))
        if it_value is not None and math.isfinite(it_value):
            iteration = int(it_value)
        else:
            iteration = fallback_iteration
        fallback_iteration = iteration + 1
        step_value = _number(fields.get("gradient_step"))
        step = (
            int(step_value)
            if step_value is not None and math.isfinite(step_value)
            else iteration + 1
        )
        wall = _number(fields.get("wallclock_time"))
        wall = float(wall) if wall is not None else 0.0
        values = {name: _number(fields.get(name)) for name in (*TRAIN_FIELDS, "val_loss")}
        eval_train = extra.pop("eval_train_loss", None)
        has_train = any(values[name] is not None for name in TRAIN_FIELDS) or bool(extra)
        if has_train:
            apply_metrics(
                log,
                MetricsSnapshot(
                    iteration,
                    step,
                    wall,
                    values["train_loss"],
                    None,
                    values["learning_rate"],
                    values["tokens_per_sec"],
                    values["iter_time_ms"],
                    extra or None,
                ),
            )
        if values["val_loss"] is not None or eval_train is not None:
            apply_eval(
                log,
                iteration,
                step,
                wall,
                values["val_loss"],
                None,
                {"eval_train_loss": eval_train} if eval_train is not None else None,
            )


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def apply_summary(log: ExperimentLog, summary: Mapping[str, Any]) -> None:
    """Best/final losses from the history, overridden by the run's W&B summary where it has
    them; the duration from the summary's ``_runtime``, else the last row's wall-clock."""
    log.compute_summary()
    for name in SUMMARY_FIELDS:
        value = _number(summary.get(name))
        if value is not None:
            setattr(log, name, value)
    if log.duration_seconds is None:
        runtime = _number(summary.get("_runtime"))
        if runtime is None and log.metrics_history:
            runtime = log.metrics_history[-1].wallclock_time
        log.duration_seconds = runtime


def local_run_id(entity: Any, project: Any, run_id: Any) -> str:
    """The local run id (and file stem) of a W&B run: ``wandb_<entity>_<project>_<id>``."""
    parts = (str(entity or ""), str(project or ""), str(run_id))
    return "wandb_" + "_".join(safe_name(part) for part in parts)


def run_to_log(
    run: Any,
    *,
    key_aliases: Mapping[str, Iterable[str]] | None = None,
    config_aliases: Mapping[str, str] | None = None,
    page_size: int = 1000,
) -> ExperimentLog:
    """Convert one ``wandb.apis.public.Run`` into an ``ExperimentLog`` (whole history)."""
    config_raw = dict(run.config or {})
    kwargs = unwrap_config(config_raw, CONFIG_ALIASES if config_aliases is None else config_aliases)
    kwargs["experiment_name"] = run.name or kwargs.get("experiment_name") or run.id
    config = ExperimentConfig(**kwargs)
    state = str(getattr(run, "state", "") or "")
    log = ExperimentLog(
        config=config,
        start_time=_iso(getattr(run, "created_at", None)),
        notes=getattr(run, "notes", None) or "",
        status="finished"
        if state == "finished"
        else "running"
        if state == "running"
        else "unfinished",
    )
    with gc_paused():
        history_to_log(log, run.scan_history(page_size=page_size), RowMapper(key_aliases))
    apply_summary(log, dict(getattr(run, "summary", {}) or {}))
    if log.status == "finished":
        log.end_time = _iso(getattr(run, "heartbeat_at", None)) or log.start_time
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
