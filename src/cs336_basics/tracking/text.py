"""Plain-text rendering of runs: the summary block and aligned tables (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .records import ExperimentLog


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


def _mirror(state: Any) -> str:
    """A mirror's link and status (its raw value, should it not be an object)."""
    if not isinstance(state, dict):
        return fmt(state)
    return f"{state.get('url') or state.get('run_id') or ''} {state.get('status', '')}"


def format_summary(log: ExperimentLog) -> str:
    """The block ``print_summary`` shows for one run."""
    history = log.metrics_history
    cfg = log.config
    lines = [
        f"Experiment: {log.experiment_name}",
        f"  run id:           {log.run_id or '-'}",
        f"  status:           {log.status}",
        f"  file:             {log.source or '-'}",
        f"  started:          {log.start_time or '-'}",
        f"  ended:            {log.end_time or '-'}",
        f"  duration:         {format_duration(log.duration_seconds)}"
        f" ({fmt(log.duration_seconds, 1)} s)",
        f"  rows logged:      {len(history)}",
        f"  last iteration:   {fmt(log.last_iteration)}",
        f"  gradient steps:   {fmt(log.last_gradient_step)}",
        f"  tokens seen:      {fmt(log.tokens_seen)}",
        f"  best train loss:  {fmt(log.best_train_loss)}",
        f"  best val loss:    {fmt(log.best_val_loss)}",
        f"  final train loss: {fmt(log.final_train_loss)}",
        f"  final val loss:   {fmt(log.final_val_loss)}",
        f"  model:            d_model={cfg.d_model} layers={cfg.num_layers} "
        f"heads={cfg.num_heads} d_ff={cfg.d_ff} ctx={cfg.context_length}",
        f"  optimizer:        {cfg.optimizer_name} lr={cfg.max_learning_rate}->"
        f"{cfg.min_learning_rate} batch={cfg.batch_size} warmup={cfg.warmup_iters}",
    ]
    if cfg.extra:
        lines.append("  other config:     " + ", ".join(f"{k}={v}" for k, v in cfg.extra.items()))
    if log.diverged_at is not None:
        lines.append(f"  DIVERGED at iteration {log.diverged_at} (NaN/inf loss)")
    if log.superseded_history:
        lines.append(
            f"  superseded rows:  {len(log.superseded_history)} (kept from before a restart)"
        )
    for name, state in log.mirrors.items():
        lines.append(f"  mirror {name}:     {_mirror(state)}".rstrip())
    if log.notes:
        lines.append(f"  notes:            {log.notes}")
    return "\n".join(lines)
