"""What ``init`` decides before a run exists: the arguments (with W&B's environment
variables), mode, mirror, config, the run to resume."""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..core import env
from ..core.config import ExperimentConfig
from ..core.errors import LogFormatError, TrackingError, UsageError
from ..core.values import MAX_TAG_CHARS
from ..store.layout import run_files
from ..store.load import load_run
from ..wandb_adapter.client import real_wandb_installed
from ..wandb_adapter.keys import CONFIG_ALIASES, unwrap_config
from ._objects import note_once

logger = logging.getLogger("cs336_basics")

#: W&B's spellings of a mode -> online, offline or disabled.
MODES = {
    "online": "online",
    "run": "online",
    "shared": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled",
}
_told_missing = False


def resolve_mode(mode: Any, settings: Any) -> str:
    """``mode=``, else ``Settings(mode=)``, else ``WANDB_MODE``, else online."""
    chosen = mode or getattr(settings, "mode", None) or env.get(env.WANDB_MODE) or "online"
    if chosen not in MODES:
        raise ValueError(f"init(mode=): expected online, offline or disabled, got {chosen!r}")
    return MODES[chosen]


def from_env(value: Any, variable: str) -> Any:
    """An ``init`` argument, else the W&B environment variable that stands for it (as
    ``wandb.init`` reads them), else None."""
    if value is not None:
        return value
    return env.get(variable)


def tags_from(value: Any) -> list[str]:
    """``tags=`` (a list or tuple of strings), else ``WANDB_TAGS`` (comma-separated); each
    made a tag this package takes (see ``core.values.check_tag``: W&B allows blanks, which
    become ``_``), said once when one had to change."""
    if value is None:
        text = env.get(env.WANDB_TAGS)
        tags = [t.strip() for t in text.split(",") if t.strip()] if text else []
    elif isinstance(value, str) or not all(isinstance(t, str) for t in value):
        raise TypeError(f"init(tags=): expected a list of strings, got {value!r:.60}")
    else:
        tags = [t for t in value if t]
    out = []
    for tag in tags:
        kept = (c if c.isprintable() and not c.isspace() and c != "," else "_" for c in tag)
        fixed = "".join(kept).lstrip("+-")[:MAX_TAG_CHARS] or "_"
        if fixed != tag:
            note_once("init()", "tags", f"tag {tag!r} is kept as {fixed!r} (no blanks, commas)")
        out.append(fixed)
    return out


def wandb_installed() -> bool:
    """True if wandb can be mirrored to; says once, in the log, when it cannot."""
    global _told_missing
    if real_wandb_installed():
        return True
    if not _told_missing:
        _told_missing = True
        logger.warning(
            "wandb is not installed: runs are logged locally only "
            "(pip install 'cs336-basics[wandb]' to mirror them to W&B)"
        )
    return False


def _json_safe(value: Any) -> Any:
    """What W&B would store for a config value: JSON as is, anything else as its str()."""
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        if isinstance(value, dict):
            return {str(k): _json_safe(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_json_safe(v) for v in value]
        return str(value)
    return value


def clean_config(raw: dict[str, Any]) -> dict[str, Any]:
    return {str(k): _json_safe(v) for k, v in raw.items()}


def local_config_kwargs(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """W&B config -> ``ExperimentConfig`` keyword arguments, with pull's alias table."""
    kwargs = unwrap_config(raw, CONFIG_ALIASES)
    kwargs["experiment_name"] = name
    return kwargs


def apply_config(config: ExperimentConfig, kwargs: dict[str, Any]) -> None:
    """Change ``config`` in place (the tracker holds this very object)."""
    named = {f.name for f in fields(ExperimentConfig) if f.name != "extra"}
    for key, value in kwargs.items():
        if key in named:
            setattr(config, key, value)
        else:
            config.extra[key] = value


def find_local_run(log_dir: Path, wandb_id: str) -> Path | None:
    """The latest local run in ``log_dir`` recorded as W&B run ``wandb_id``."""
    if not log_dir.is_dir():
        return None
    found: list[tuple[str, Path]] = []
    for path in run_files(log_dir):
        try:
            log = load_run(path, on_problem=lambda problem: None).log
        except (LogFormatError, OSError):
            continue
        if (log.mirrors.get("wandb") or {}).get("run_id") == wandb_id:
            found.append((log.start_time or "", path))
    return max(found)[1] if found else None


def resume_target(resume: Any, run_id: str | None, log_dir: Path) -> Path | None:
    """The local run ``init(resume=, id=)`` continues, or None for a new run."""
    if resume in (None, False, "never") or run_id is None:
        if resume == "must" and run_id is None:
            raise UsageError("init(resume='must'): give the run to resume with id=")
        if resume == "never" and run_id is not None and find_local_run(log_dir, run_id):
            raise UsageError(
                f"init(id={run_id!r}, resume='never'): a run with this id exists in {log_dir}"
            )
        return None
    if resume not in (True, "allow", "must", "auto"):
        raise ValueError(
            f"init(resume=): expected 'allow', 'must', 'never', 'auto' or a bool, got {resume!r}"
        )
    target = find_local_run(log_dir, run_id)
    if target is None and resume == "must":
        raise UsageError(
            f"init(id={run_id!r}, resume='must'): no local run with this W&B id in {log_dir}"
        )
    return target


def make_mirror(
    mode: str, *, project: str | None, entity: str | None, run_id: str, options: dict[str, Any]
) -> list[Any]:
    """``[WandbSink(...)]`` for online/offline with wandb installed, else ``[]``."""
    if mode == "disabled" or not wandb_installed():
        return []
    from ..wandb_adapter.sink import WandbSink

    try:
        return [
            WandbSink(
                project=project,
                entity=entity,
                mode=mode,
                run_id=run_id,
                dir=options.pop("dir", None),
                init_kwargs=options,
                script_keys=True,
            )
        ]
    except TrackingError as exc:
        logger.warning("the W&B mirror cannot start (%s): logging locally only", exc)
        return []
