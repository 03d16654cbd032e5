"""A W&B run (history rows, config, summary, attributes) as an ``ExperimentLog``: what pull
(from the server) and import (from offline ``.wandb`` files) share. No GraphQL, no wandb.

Rows replay through the live tracker's rules (an eval fills its iteration's row; a row at
an earlier iteration supersedes the later ones), so a run mirrored by this project comes
back equal to the local one. The config keeps only what the run recorded
(``ExperimentConfig.only``): a field W&B does not have is not set, never a default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..core.config import ExperimentConfig
from ..core.errors import LogFormatError
from ..core.log import ExperimentLog, apply_eval, apply_metrics
from ..core.row import SUMMARY_FIELDS, TRAIN_FIELDS, MetricsSnapshot
from ..core.values import as_index, as_number
from ..store.layout import safe_name
from .keys import COMPUTE_KEY, CONFIG_ALIASES, SYSTEM_PREFIX, RowMapper, unwrap_config

#: The mark the W&B mirror leaves in a run's config: the local run it mirrors.
MIRROR_OF = "cs336_local_run"


def history_to_log(
    log: ExperimentLog, rows: Iterable[Mapping[str, Any]], mapper: RowMapper
) -> set[str]:
    """Replay W&B history rows into ``log`` with the live tracker's rules; returns the keys
    the rows had. A row of ``system/`` keys (this project's mirror of a system-metrics
    sample) goes to ``log.system_history``."""
    fallback_iteration = 0
    seen: set[str] = set()
    known: set[tuple[str, ...]] = set()
    system: dict[tuple[str, ...], bool] = {}
    for item in rows:
        keys = tuple(item)
        if keys not in known:
            known.add(keys)
            seen.update(keys)
        is_system = system.get(keys)
        if is_system is None:
            is_system = system[keys] = _system_row(keys)
        if is_system:
            _add_sample(log, item)
            continue
        fields, extra = mapper.map(item)
        iteration = as_index(fields.get("iteration"))
        if iteration is None:
            iteration = fallback_iteration
        fallback_iteration = iteration + 1
        step = as_index(fields.get("gradient_step"))
        if step is None:
            step = iteration + 1
        wall = as_number(fields.get("wallclock_time"))
        wall = float(wall) if wall is not None else 0.0
        values = {name: as_number(fields.get(name)) for name in (*TRAIN_FIELDS, "val_loss")}
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
    return seen


def _system_row(keys: tuple[str, ...]) -> bool:
    """Whether a row's keys are a system-metrics sample's: ``system/`` values and axes."""
    values = [k for k in keys if not k.startswith("_")]
    axes = {"wallclock_time", "gradient_step", "tokens", "flops"}
    return any(k.startswith(SYSTEM_PREFIX) for k in values) and all(
        k.startswith(SYSTEM_PREFIX) or k in axes for k in values
    )


def _add_sample(log: ExperimentLog, item: Mapping[str, Any]) -> None:
    values = {
        key[len(SYSTEM_PREFIX) :]: number
        for key, value in item.items()
        if key.startswith(SYSTEM_PREFIX) and (number := as_number(value)) is not None
    }
    if not values:
        return
    history = log.system_history
    number = 0 if history.last_iteration is None else history.last_iteration + 1
    step = as_index(item.get("gradient_step")) or 0
    wall = as_number(item.get("wallclock_time"))
    if wall is None:
        wall = as_number(item.get("_runtime"))
    history.append(MetricsSnapshot(number, step, float(wall or 0.0), extra=values))


def iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def apply_summary(
    log: ExperimentLog, summary: Mapping[str, Any], history_keys: Iterable[str] = ()
) -> None:
    """Best/final losses from the history, overridden by the run's W&B summary where it has
    them; the duration from the summary's ``_runtime``, else the last row's wall-clock.
    Every other summary value that is a number or a string goes to ``log.summary``, but
    those W&B made itself from logged keys (the last value of each, ``history_keys``)."""
    logged = set(history_keys)
    log.compute_summary()
    for name in SUMMARY_FIELDS:
        value = as_number(summary.get(name))
        if value is not None:
            setattr(log, name, value)
    if log.duration_seconds is None:
        runtime = as_number(summary.get("_runtime"))
        if runtime is None and log.metrics_history:
            runtime = log.metrics_history[-1].wallclock_time
        log.duration_seconds = runtime
    for key, value in summary.items():
        if key in SUMMARY_FIELDS or key in logged or key.startswith("_"):
            continue
        if key == "local_status":
            continue
        number = as_number(value)
        if number is not None:
            log.summary[key] = number
        elif isinstance(value, str):
            log.summary[key] = value


def local_run_id(entity: Any, project: Any, run_id: Any) -> str:
    """The local run id (and file stem) of a W&B run: ``wandb_<entity>_<project>_<id>``."""
    parts = (str(entity or ""), str(project or ""), str(run_id))
    return "wandb_" + "_".join(safe_name(part) for part in parts)


def config_of(
    raw: Mapping[str, Any], name: str | None, aliases: Mapping[str, str] | None, where: str
) -> ExperimentConfig:
    """The local config of a W&B run's config (only what it recorded is set)."""
    kwargs = unwrap_config(raw, CONFIG_ALIASES if aliases is None else aliases)
    kwargs.pop(MIRROR_OF, None)
    kwargs.pop(COMPUTE_KEY, None)
    kwargs["experiment_name"] = name or kwargs.get("experiment_name") or "wandb_run"
    if not isinstance(kwargs["experiment_name"], str) or not kwargs["experiment_name"].strip():
        kwargs["experiment_name"] = "wandb_run"
    try:
        return ExperimentConfig.only(**kwargs)
    except (TypeError, ValueError) as exc:
        raise LogFormatError(f"{where}: its config cannot be kept ({exc})") from exc


def mirrored_local_run(raw_config: Mapping[str, Any]) -> str | None:
    """The local run a W&B run mirrors (this project's mirror marks its config), or None."""
    value = raw_config.get(MIRROR_OF)
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    return value if isinstance(value, str) and value else None


def attributes(log: ExperimentLog, tags: Any, group: Any, job_type: Any) -> None:
    """A W&B run's tags, group and job type, kept on the local run."""
    log.tags = [str(t) for t in (tags or []) if isinstance(t, str) and t]
    log.group = str(group) if group else None
    log.job_type = str(job_type) if job_type else None


def compute_of(raw_config: Mapping[str, Any]) -> dict[str, Any]:
    """``ExperimentLog.compute`` as this project's mirror recorded it in a W&B run's config
    (:data:`~.keys.COMPUTE_KEY`), or empty."""
    value = raw_config.get(COMPUTE_KEY)
    if isinstance(value, dict) and set(value) <= {"value", "desc"} and "value" in value:
        value = value["value"]
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, (int, float, str))}
