"""Plain-text rendering of runs: the summary block, aligned tables, a mirror's status (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .log import MFU_ROWS, ExperimentLog


def fmt(value: Any, digits: int = 4) -> str:
    """A compact cell: floats to ``digits`` significant places, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) < 0.1 or abs(value) >= 1e6):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned text table with a header rule."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, rule, *body])


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


def describe_mirror(state: Any) -> str:
    """A mirror's status as every listing shows it: ``offline`` for a W&B run written only
    to this machine (``cs336-exp push`` uploads it), else its recorded status."""
    if not isinstance(state, dict):
        return fmt(state)
    status = str(state.get("status") or "-")
    if status == "finished" and state.get("mode") == "offline":
        return "offline"
    return status


def _mirror(state: Any) -> str:
    """A mirror's link and status (its raw value, should it not be an object)."""
    if not isinstance(state, dict):
        return fmt(state)
    where = state.get("url") or state.get("sync_dir") or state.get("run_id") or ""
    return f"{where} {describe_mirror(state)}".strip()


def system_brief(values: dict[str, Any]) -> str:
    """What a system sample holds, in a few words: ``2 GPUs, CPU, memory``."""
    gpus = {name.split(".")[1] for name in values if name.startswith("gpu.")}
    parts = [f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}"] if gpus else []
    if any(name.endswith("cpu_percent") for name in values):
        parts.append("CPU")
    if any("mem_" in name or "rss" in name for name in values if not name.startswith("gpu.")):
        parts.append("memory")
    return ", ".join(parts) or "-"


def format_summary(log: ExperimentLog) -> str:
    """The block ``print_summary`` shows for one run (``results()``'s numbers: for a run
    that did not finish, the best and last losses of its history so far)."""
    history = log.metrics_history
    cfg = log.config
    results = log.results()
    marked = " (so far)" if results.from_history else ""
    lines = [
        f"Experiment: {log.experiment_name}",
        f"  run id:           {log.run_id or '-'}",
        f"  status:           {results.status}",
        f"  file:             {log.source or '-'}",
        f"  started:          {log.start_time or '-'}",
        f"  ended:            {log.end_time or '-'}",
        f"  duration:         {format_duration(results.duration_seconds)}"
        f" ({fmt(results.duration_seconds, 1)} s)",
        f"  rows logged:      {len(history)}",
        f"  last iteration:   {fmt(log.last_iteration)}",
        f"  gradient steps:   {fmt(log.last_gradient_step)}",
        f"  tokens seen:      {fmt(results.tokens)}",
        f"  best train loss:  {fmt(results.best_train_loss)}{marked}",
        f"  best val loss:    {fmt(results.best_val_loss)}{marked}",
        f"  {'last' if marked else 'final'} train loss:{' ' if marked else ''} "
        f"{fmt(results.final_train_loss)}{marked}",
        f"  {'last' if marked else 'final'} val loss:{' ' if marked else ''}   "
        f"{fmt(results.final_val_loss)}{marked}",
        f"  model:            d_model={fmt(cfg.d_model)} layers={fmt(cfg.num_layers)} "
        f"heads={fmt(cfg.num_heads)} d_ff={fmt(cfg.d_ff)} ctx={fmt(cfg.context_length)}",
        f"  optimizer:        {fmt(cfg.optimizer_name)} lr={fmt(cfg.max_learning_rate)}->"
        f"{fmt(cfg.min_learning_rate)} batch={fmt(cfg.batch_size)} "
        f"warmup={fmt(cfg.warmup_iters)}",
    ]
    if results.flops is not None:
        lines.append(f"  training FLOPs:   {results.flops:.3g}")
    if results.mfu is not None:
        lines.append(f"  MFU:              {results.mfu:.1%} (median of the last {MFU_ROWS} rows)")
    if log.system_history:
        names = log.system_history[-1].extra or {}
        lines.append(f"  system samples:   {len(log.system_history)} ({system_brief(names)})")
    if cfg.extra:
        lines.append("  other config:     " + ", ".join(f"{k}={v}" for k, v in cfg.extra.items()))
    if results.diverged_at is not None:
        lines.append(f"  DIVERGED at iteration {results.diverged_at} (NaN/inf loss)")
    if results.alerts:
        lines.append(f"  ALERTS:           {results.alerts}")
        for alert in log.alerts[:5]:
            lines.append(f"    {alert.kind:<9} {alert.text}")
        if results.alerts > 5:
            lines.append(f"    ... and {results.alerts - 5} more")
    if log.superseded_history:
        lines.append(
            f"  superseded rows:  {len(log.superseded_history)} (kept from before a restart)"
        )
    for name, state in log.mirrors.items():
        lines.append(f"  mirror {name}:     {_mirror(state)}".rstrip())
    if log.group:
        lines.append(f"  group:            {log.group}")
    if log.tags:
        lines.append(f"  tags:             {', '.join(log.tags)}")
    if log.notes:
        lines.append(f"  notes:            {log.notes}")
    return "\n".join(lines)


def describe_git(git: Any) -> str:
    """A run's code in one line: commit (short), branch, dirty or clean; or why unknown."""
    if not isinstance(git, dict) or not git:
        return "not recorded"
    if git.get("error"):
        return str(git["error"])
    commit = str(git.get("commit") or "no commit yet")[:12]
    branch = git.get("branch") or "detached HEAD"
    state = "dirty" if git.get("dirty") else "clean"
    if git.get("dirty") and git.get("diff_bytes") is not None:
        kept = " (truncated)" if git.get("diff_truncated") else ""
        state += f", diff {git['diff_bytes']} bytes{kept}"
    untracked = git.get("untracked_files")
    if untracked:
        state += f", {untracked} untracked file{'s' if untracked != 1 else ''}"
    return f"{commit} on {branch}, {state}"


def format_provenance(log: ExperimentLog) -> str:
    """Where the run came from (its ``provenance``), as ``cs336-exp show`` prints it."""
    record = log.provenance
    if not record:
        return "Provenance: not recorded"
    packages = record.get("packages") or {}
    shown = ", ".join(f"{k} {v}" for k, v in packages.items() if v and k != "torch_from")
    lines = [
        "Provenance:",
        f"  recorded:         {record.get('recorded_at') or '-'}",
        f"  command:          {' '.join(map(str, record.get('command') or [])) or '-'}",
        f"  folder:           {record.get('cwd') or '-'}",
        f"  code:             {describe_git(record.get('git'))}",
    ]
    git = record.get("git") or {}
    if git.get("repository"):
        lines.append(f"  repository:       {git['repository']}")
    if git.get("diff_file"):
        lines.append(f"  diff:             {git['diff_file']} (beside the run)")
    python = f"{record.get('python') or '-'} ({record.get('platform') or '-'})"
    lines.append(f"  python:           {python}")
    lines.append(f"  packages:         {shown or '-'}")
    gpus = record.get("gpus") or []
    lines.append(f"  host:             {record.get('host') or '-'}")
    lines.append(f"  gpus:             {', '.join(map(str, gpus)) if gpus else 'none seen'}")
    for name, data in (record.get("data") or {}).items():
        if not isinstance(data, dict):
            continue
        label = f"data {name}:"
        if data.get("error"):
            lines.append(f"  {label:<18}{data.get('path')}: {data['error']}")
            continue
        lines.append(
            f"  {label:<18}{data.get('path')} ({data.get('size')} bytes, "
            f"{str(data.get('fingerprint', ''))[:19]})"
        )
    for entry in record.get("resumes") or []:
        lines.append(
            f"  resumed:          {entry.get('recorded_at')}: {describe_git(entry.get('git'))}"
        )
    return "\n".join(lines)
