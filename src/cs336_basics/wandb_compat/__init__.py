"""A drop-in for the parts of ``wandb`` training scripts and frameworks use: ``import
cs336_basics.wandb_compat as wandb``, or, with no edit to the script, ``python -m
cs336_basics.wandb_compat train.py ARGS`` (see :mod:`.__main__`), and the script runs
unchanged, writing the guide's JSON locally.

Every run is an :class:`~cs336_basics.ExperimentTracker` run in ``log_dir`` (``init(...,
log_dir=)``, else ``CS336_LOG_DIR``, else ``experiment_logs``). With ``mode`` online or
offline (the argument, ``Settings(mode=)``, else ``WANDB_MODE``, else online) and wandb
installed, the run is also mirrored to W&B by a ``WandbSink`` in its own process (which
imports the real client, whatever this process aliased); ``mode="disabled"`` keeps it local.
Without wandb the run is local only, said once in the log.

Covered: ``init`` (project, entity, name, config, notes, tags, group, job_type, dir, mode,
resume, id, reinit, settings; the ``WANDB_*`` variables for what is not given), ``run.config``
(dict and attribute access, ``update``), ``log(dict, step=, commit=)``, ``run.summary`` (what
the script sets is kept in the run and mirrored), ``define_metric`` (step_metric, summary),
``finish(exit_code)``, ``run.name``/``id``/``dir``/``project``, ``wandb.run``,
``wandb.config``, ``wandb.summary``, ``wandb.Settings``, ``with wandb.init(...) as run:``,
and what the Hugging Face ``WandbCallback`` and Lightning's ``WandbLogger`` touch besides:
``wandb.sdk.lib`` (``RunDisabled``), ``wandb.sdk.lib.config_util`` (``ConfigError``),
``wandb.wandb_run.Run``, ``run._label``, ``termwarn``/``termlog``/``termerror``, ``require``,
``Artifact.new_file``. A run left open at exit is finished (exit code 1 after an uncaught
exception), as W&B does.

No local meaning (media, tables, artifacts, ``watch``, ``save``, strings and other
non-numbers in ``log``): said once on the ``cs336_basics`` logger, never an error. How keys,
steps and config map is in :mod:`._steps` and :mod:`._setup`; the run object is
:mod:`._run`, ``Config``/``Summary``/``Settings`` and the media stand-ins :mod:`._objects`,
``wandb.wandb_run`` and ``wandb.sdk`` the names frameworks import.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from pathlib import Path
from typing import Any

from ..core import env
from ..core.errors import UsageError
from ..runtime.tracker import ExperimentTracker
from ..store.load import load_experiment_log
from ..wandb_adapter.client import new_run_id
from ._objects import PLACEHOLDERS, Config, Settings, Summary, as_dict, note_once
from ._run import Run, new_config
from ._setup import clean_config, from_env, make_mirror, resolve_mode, resume_target, tags_from

__all__ = [
    "Config",
    "Run",
    "Settings",
    "Summary",
    "define_metric",
    "finish",
    "init",
    "log",
    "login",
    "require",
    "teardown",
    "termerror",
    "termlog",
    "termwarn",
    *PLACEHOLDERS,
]

#: The W&B client API this drop-in follows (a framework may compare versions).
__version__ = "0.31.0"
#: Marks this module as the drop-in (the mirror refuses to mirror to it).
__cs336_compat__ = True

globals().update(PLACEHOLDERS)  # wandb.Image, wandb.Table, wandb.Artifact, ...

logger = logging.getLogger("cs336_basics")
DEFAULT_LOG_DIR = "experiment_logs"
_runs: list[Run] = []  # open runs, the current one last
_lock = threading.Lock()
_exit_hooked = False
_crashed = False
#: ``init`` arguments with no local meaning: accepted, said once when given a value.
_IGNORED = (
    "anonymous",
    "save_code",
    "sync_tensorboard",
    "monitor_gym",
    "magic",
    "force",
    "allow_val_change",
    "config_exclude_keys",
    "config_include_keys",
    "fork_from",
    "resume_from",
    "tensorboard",
)


def _current() -> Run | None:
    return _runs[-1] if _runs else None


def __getattr__(name: str) -> Any:
    # wandb.run, wandb.config and wandb.summary follow the current run.
    if name == "run":
        return _current()
    if name in ("config", "summary"):
        run = _current()
        if run is None:
            return Config(_before_init) if name == "config" else Summary()
        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _before_init(data: dict[str, Any]) -> None:
    raise UsageError(
        f"wandb.config: set {', '.join(map(repr, data))} after wandb.init() (or pass "
        "config= to it): there is no run to hold it yet, as with W&B"
    )


def _forget(run: Run) -> None:
    with _lock:
        if run in _runs:
            _runs.remove(run)


def _hook_exit() -> None:
    """Finish runs left open at exit, as W&B does (after the tracker's own hook exists, so
    this one runs first)."""
    global _exit_hooked
    if _exit_hooked:
        return
    _exit_hooked = True
    previous = sys.excepthook

    def excepthook(*args: Any) -> None:
        global _crashed
        _crashed = True
        previous(*args)

    sys.excepthook = excepthook
    atexit.register(_finish_all)


def _finish_all() -> None:
    for run in list(reversed(_runs)):
        try:
            run.finish(exit_code=1 if _crashed else 0)
        except Exception:  # at interpreter exit nothing may raise
            pass


def init(
    project: str | None = None,
    entity: str | None = None,
    config: Any = None,
    name: str | None = None,
    notes: str | None = None,
    tags: Any = None,
    group: str | None = None,
    job_type: str | None = None,
    dir: str | Path | None = None,
    mode: str | None = None,
    resume: bool | str | None = None,
    id: str | None = None,
    reinit: bool | str | None = None,
    settings: Settings | dict[str, Any] | None = None,
    *,
    log_dir: str | Path | None = None,
    **kwargs: Any,
) -> Run:
    """Start a run (W&B's arguments; ``log_dir`` is where the local JSON goes: else
    ``CS336_LOG_DIR``, else ``experiment_logs``). Arguments not given are read from W&B's
    environment variables as ``wandb.init`` reads them (``WANDB_PROJECT``, ``WANDB_NAME``,
    ``WANDB_RUN_ID``, ``WANDB_NOTES``, ``WANDB_TAGS``, ``WANDB_RUN_GROUP``,
    ``WANDB_JOB_TYPE``, ``WANDB_RESUME``, ``WANDB_DIR``)."""
    for key, value in kwargs.items():
        if key not in _IGNORED:
            raise TypeError(f"init() got an unexpected keyword argument {key!r}")
        if value not in (None, False):  # (Lightning always passes anonymous=None)
            note_once("init()", key, f"argument {key}= has no local meaning and is ignored")
    if isinstance(settings, dict):
        settings = Settings(**settings)
    current = _current()
    if current is not None:
        if reinit in (None, False, "default", "return_previous"):
            return current
        if reinit in (True, "finish_previous"):
            current.finish()
        elif reinit != "create_new":
            raise ValueError(
                "init(reinit=): expected True, False, 'create_new', 'finish_previous' or "
                f"'return_previous', got {reinit!r}"
            )
    project = from_env(project, env.WANDB_PROJECT)
    entity = from_env(entity, env.WANDB_ENTITY)
    name = from_env(name, env.WANDB_NAME)
    notes = from_env(notes, env.WANDB_NOTES)
    group = from_env(group, env.WANDB_RUN_GROUP)
    job_type = from_env(job_type, env.WANDB_JOB_TYPE)
    resume = from_env(resume, env.WANDB_RESUME)
    dir = from_env(dir, env.WANDB_DIR)
    id = from_env(id, env.WANDB_RUN_ID)
    tag_list = tags_from(tags)
    chosen_mode = resolve_mode(mode, settings)
    run_id = str(id) if id is not None else new_run_id()
    run_name = str(name) if name else run_id
    folder = Path(log_dir or env.get(env.LOG_DIR) or DEFAULT_LOG_DIR)
    target = resume_target(resume, run_id if id is not None else None, folder)
    raw = clean_config(as_dict(config))
    options: dict[str, Any] = {"dir": str(dir) if dir is not None else None, "config": raw}
    if settings is not None:
        extra = {k: v for k, v in clean_config(settings.to_dict()).items() if k != "mode"}
        if extra:
            options["settings"] = extra
    sinks = make_mirror(chosen_mode, project=project, entity=entity, run_id=run_id, options=options)
    experiment = new_config(raw, run_name)
    tracker = ExperimentTracker(experiment, log_dir=folder, sinks=sinks, resume=target)
    tracker.set_attributes(tags=tag_list, group=group, job_type=job_type)
    if notes is not None:
        tracker.set_notes(str(notes))
    if not sinks:  # nothing records the W&B identity: keep it for resume=, push and pull
        tracker.log.mirrors["wandb"] = {
            "run_id": run_id,
            "project": project,
            "entity": entity,
            "mode": chosen_mode,
            "status": "disabled",
        }
    run = Run(
        tracker,
        run_id=run_id,
        name=run_name,
        project=project,
        entity=entity,
        mode=chosen_mode,
        group=group,
        job_type=job_type,
        tags=tag_list,
        dir=str(dir) if dir is not None else None,
        raw_config=raw,
        save_on_start=not sinks,
        on_finish=_forget,
        resumed_after=load_experiment_log(target).last_iteration if target else None,
    )
    with _lock:
        _runs.append(run)
    _hook_exit()
    return run


def _need_run(call: str) -> Run:
    run = _current()
    if run is None:
        raise RuntimeError(f"wandb.{call}: call wandb.init() first")
    return run


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """``wandb.log``: the current run's :meth:`Run.log`."""
    _need_run("log()").log(data, step=step, commit=commit)


def define_metric(name: str, *args: Any, **kwargs: Any) -> None:
    _need_run("define_metric()").define_metric(name, *args, **kwargs)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """``wandb.finish``: finish the current run (no run: nothing to do)."""
    run = _current()
    if run is not None:
        run.finish(exit_code=exit_code)


def login(*args: Any, **kwargs: Any) -> bool:
    """Nothing to do locally; the W&B mirror logs in with wandb's own settings."""
    return True


def teardown(*args: Any, **kwargs: Any) -> None:
    """Finish every open run."""
    _finish_all()


def _unsupported(call: str) -> Any:
    def function(*args: Any, **kwargs: Any) -> None:
        note_once(f"{call}()", "", "no local meaning: nothing is stored")

    function.__name__ = call
    return function


def termlog(string: str = "", newline: bool = True, repeat: bool = True, **kwargs: Any) -> None:
    """What wandb prints as ``wandb: ...``: said on the ``cs336_basics`` logger."""
    logger.info("wandb: %s", string)


def termwarn(string: str, repeat: bool = True, **kwargs: Any) -> None:
    logger.warning("wandb: %s", string)


def termerror(string: str, repeat: bool = True, **kwargs: Any) -> None:
    logger.error("wandb: %s", string)


def require(*requirements: Any, **kwargs: Any) -> None:
    """W&B feature flags (``wandb.require("service")``): nothing to turn on locally."""


save = _unsupported("save")
watch = _unsupported("watch")
alert = _unsupported("alert")
log_artifact = _unsupported("log_artifact")
use_artifact = _unsupported("use_artifact")
log_model = _unsupported("log_model")
