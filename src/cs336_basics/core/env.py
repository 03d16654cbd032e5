"""Every environment variable this package reads, in one place.

| variable | read by | meaning |
|---|---|---|
| ``CS336_SINKS`` | tracker | comma-separated sink names used when ``sinks=None`` (``wandb``) |
| ``RANK``, ``LOCAL_RANK`` | tracker | torch.distributed rank: only rank 0 tracks; < 0: no ranks |
| ``WANDB_PROJECT`` | W&B sink, push, drop-in | project when none is given (``cs336-basics``) |
| ``WANDB_ENTITY`` | W&B sink, push, pull | entity when none is given |
| ``WANDB_MODE`` | W&B sink, drop-in, push | online, offline or disabled (wandb's own variable) |
| ``WANDB_HTTP_TIMEOUT`` | pull | seconds per W&B request when ``timeout`` is not given |
| ``WANDB_SERVICE`` | mirror process | wandb's pointer to its service; not passed on to a mirror |
| ``CS336_NO_CACHE`` | loading | ``1``: neither read nor write the documents' columnar caches |
| ``CS336_SYSTEM_INTERVAL`` | tracker | seconds between system samples (below) |
| ``CUDA_VISIBLE_DEVICES`` | system metrics | the GPUs sampled (indices, ``GPU-`` UUIDs) |
| ``CS336_LOG_DIR`` | W&B drop-in | its runs' folder without ``init(log_dir=)`` |
| ``CS336_PROVENANCE`` | tracker | ``0``: record no provenance when ``provenance=`` is not given |
| ``WANDB_NAME`` ... ``WANDB_DIR`` | W&B drop-in | what ``init`` was not given (below) |
| ``WANDB_SWEEP_ID`` | sweeps | set by ``wandb agent``, with ``WANDB_RUN_ID`` (below) |

``CS336_SYSTEM_INTERVAL`` is read when the tracker is given no ``system_interval`` (default
10 s; ``0`` turns sampling off). Unset ``CUDA_VISIBLE_DEVICES``: every GPU NVML sees.

The drop-in reads, as ``wandb.init`` does, ``WANDB_NAME``, ``WANDB_RUN_ID``, ``WANDB_NOTES``,
``WANDB_TAGS`` (comma-separated), ``WANDB_RUN_GROUP``, ``WANDB_JOB_TYPE``, ``WANDB_RESUME``
and ``WANDB_DIR`` for the arguments a script did not give.

A W&B sweep agent (``wandb agent``) sets ``WANDB_SWEEP_ID`` and ``WANDB_RUN_ID`` in each
process it starts: the sweep, and the W&B run created for those hyperparameters, which the
process must log to (:func:`wandb_agent_run`).

wandb itself reads more of its own (``WANDB_API_KEY``, ``WANDB_BASE_URL``, ``WANDB_DIR``, ...);
they pass through untouched.
"""

from __future__ import annotations

import os

SINKS = "CS336_SINKS"
NO_CACHE = "CS336_NO_CACHE"
SYSTEM_INTERVAL = "CS336_SYSTEM_INTERVAL"
CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
RANK = "RANK"
LOCAL_RANK = "LOCAL_RANK"
WANDB_PROJECT = "WANDB_PROJECT"
WANDB_ENTITY = "WANDB_ENTITY"
WANDB_MODE = "WANDB_MODE"
WANDB_HTTP_TIMEOUT = "WANDB_HTTP_TIMEOUT"
LOG_DIR = "CS336_LOG_DIR"
PROVENANCE = "CS336_PROVENANCE"
WANDB_NAME = "WANDB_NAME"
WANDB_RUN_ID = "WANDB_RUN_ID"
WANDB_NOTES = "WANDB_NOTES"
WANDB_TAGS = "WANDB_TAGS"
WANDB_RUN_GROUP = "WANDB_RUN_GROUP"
WANDB_JOB_TYPE = "WANDB_JOB_TYPE"
WANDB_RESUME = "WANDB_RESUME"
WANDB_DIR = "WANDB_DIR"
#: Set, with ``WANDB_RUN_ID``, by ``wandb agent`` in each process it starts (wandb 0.19 to
#: 0.31: ``wandb_agent.Agent._command_run``; also ``WANDB_SWEEP_PARAM_PATH``, which wandb
#: itself reads in ``wandb.init``).
WANDB_SWEEP_ID = "WANDB_SWEEP_ID"
#: Set by wandb in a process that started its service; a child that inherits it joins that
#: service, which dies with its parent: a mirror must start its own.
WANDB_SERVICE = "WANDB_SERVICE"


def get(name: str) -> str | None:
    """The variable's value with surrounding blanks removed, or None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def caches_off() -> bool:
    """Whether ``CS336_NO_CACHE`` turns the columnar caches off (any value but 0/false)."""
    return (get(NO_CACHE) or "0").lower() not in ("0", "false", "no", "off")


def system_interval() -> float | None:
    """``CS336_SYSTEM_INTERVAL`` as seconds (``0``: sampling off), None when unset;
    ``ValueError`` naming the variable for a value that is not a number >= 0."""
    value = get(SYSTEM_INTERVAL)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{SYSTEM_INTERVAL}={value!r}: expected seconds >= 0 (0 turns it off)")
    return seconds


def wandb_agent_run() -> tuple[str, str] | None:
    """``(sweep id, W&B run id)`` when a W&B sweep agent started this process (it sets
    ``WANDB_SWEEP_ID`` and ``WANDB_RUN_ID``), else None. The run id is the W&B run the agent
    created for these hyperparameters: the mirror must log to it, or the sweep never sees
    its metric (``wandb.init`` in a sweep ignores any other id)."""
    sweep, run = get(WANDB_SWEEP_ID), get(WANDB_RUN_ID)
    if sweep is None or run is None:
        return None
    return sweep, run


def provenance_off() -> bool:
    """Whether ``CS336_PROVENANCE`` turns provenance off (0/false/no/off)."""
    return (get(PROVENANCE) or "1").lower() in ("0", "false", "no", "off")


def process_rank() -> int:
    """This process's rank under torch.distributed: RANK, else LOCAL_RANK, else 0.

    A negative value (``LOCAL_RANK=-1`` is a common "not distributed" default) and a value
    that is not an integer both mean "not distributed", i.e. rank 0.
    """
    for name in (RANK, LOCAL_RANK):
        value = get(name)
        if value is not None:
            try:
                rank = int(value)
            except ValueError:
                return 0
            return max(rank, 0)
    return 0
