"""The one table of local fields and W&B keys, in both directions (no GraphQL, no wandb).

Local -> W&B (the mirror and push):

| local field | W&B key | note |
|---|---|---|
| iteration | ``iteration`` | x-axis (``define_metric``) |
| gradient_step | ``gradient_step`` | x-axis, the default ``step_metric`` of every metric |
| wallclock_time | ``wallclock_time`` | x-axis, seconds since the run started |
| (tokens) | ``tokens`` | x-axis: gradient steps x tokens per step, when known |
| (flops) | ``flops`` | x-axis: tokens x training FLOPs per token, when both are known |
| (mfu) | ``perf/mfu`` | a train row's MFU (``core.flops.mfu``), when FLOPs/token, peak known |
| train_loss | ``train/loss`` | |
| val_loss | ``val/loss`` | logged in its own row by ``log_eval`` |
| learning_rate | ``train/lr`` | |
| tokens_per_sec | ``perf/tokens_per_sec`` | |
| iter_time_ms | ``perf/iter_time_ms`` | |
| extra metric ``X`` | ``extra/X`` | e.g. ``extra/grad_norm``; see below for the drop-in |

A run of the W&B drop-in (``script_keys``) sends an extra metric under the key the script
logged (``eval/runtime``, ``mfu``), unless that key is one this table reads as a field.

System-metrics samples (``ExperimentLog.system_history``) go in rows of their own: each
value ``X`` as ``system/X`` (``system/gpu.0.util``, ``system/proc.rss_gib``), with the
``wallclock_time`` axis (the ``step_metric`` of ``system/*``), ``gradient_step`` (the steps
done when sampled) and ``tokens``/``flops`` when known; no ``iteration`` (a sample is not a
training row). W&B's own system panel cannot be fed through ``run.log``: these are charts
of a ``system`` section. Alerts go through ``run.alert`` (title, text, level; see
``core.alerts.Alert``). The run's config carries :data:`COMPUTE_KEY` (FLOPs per token and
peak) when they are known, so a pulled run derives its MFU again.

Summary keys: ``best_train_loss``, ``best_val_loss``, ``final_train_loss``,
``final_val_loss``, ``duration_seconds`` (the local JSON's values), and ``local_status`` for a
run pushed before it finished. W&B's own ``step=`` is never passed: a lower step is
silently dropped by W&B, which breaks restarts.

W&B -> local (pull, import, and the drop-in reading a script's ``log`` calls):
:data:`KEY_ALIASES` lists, for each local field, the keys that may hold it, this project's
own key first; :class:`RowMapper` applies it (unclaimed numbers become extra metrics, an
``extra/`` prefix dropped). :data:`CONFIG_ALIASES` maps foreign config keys to
``ExperimentConfig`` fields and :func:`unwrap_config` applies it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..core.config import NUMERIC_FIELDS
from ..core.flops import mfu
from ..core.log import ExperimentLog
from ..core.row import SUMMARY_FIELDS, TRAIN_FIELDS, MetricsSnapshot
from ..core.values import as_number

#: The x-axes every W&B row carries (``tokens`` only when tokens per step are known,
#: ``flops`` only when FLOPs per token are known too).
X_AXES = ("iteration", "gradient_step", "wallclock_time", "tokens", "flops")
FIELD_TO_KEY = {
    "iteration": "iteration",
    "gradient_step": "gradient_step",
    "wallclock_time": "wallclock_time",
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "learning_rate": "train/lr",
    "tokens_per_sec": "perf/tokens_per_sec",
    "iter_time_ms": "perf/iter_time_ms",
}
EXTRA_PREFIX = "extra/"
METRIC_GLOBS = ("train/*", "val/*", "perf/*", "extra/*")
#: System-metrics samples: ``system/<name>``, charted against wall-clock time.
SYSTEM_PREFIX = "system/"
SYSTEM_GLOB = "system/*"
SYSTEM_STEP_METRIC = "wallclock_time"
MFU_KEY = "perf/mfu"
#: The config key of ``ExperimentLog.compute`` on a W&B run (pull reads it back).
COMPUTE_KEY = "cs336_compute"

#: Keys other tools use for each local field, tried after this project's own key.
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
    "train_loss": ("train_loss", "loss", "training_loss", "train/loss_step"),
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
#: mirror's own key (``FIELD_TO_KEY``), so both directions share one table. A learning-rate
#: key of Lightning's ``LearningRateMonitor`` (``lr-<Optimizer>``, ``lr-<Optimizer>/pg1``)
#: is read as the learning rate too (see :meth:`RowMapper.map`).
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
    "max_steps": "max_iters",
    "adam_beta1": "beta1",
    "adam_beta2": "beta2",
    "adam_epsilon": "eps",
    "max_grad_norm": "grad_clip",
}
_INTERNAL = ("_step", "_runtime", "_timestamp", "_wandb")
_LR_MONITOR = "lr-"


# ---------------------------------------------------------------------------------------
# Local -> W&B.


class Payloads:
    """The W&B rows of one run. ``tokens_per_step``: adds the ``tokens`` axis to every row;
    ``script_keys``: extra metrics under the script's own keys (a drop-in run);
    ``flops_per_token``: adds the ``flops`` axis (with tokens per step), and with
    ``peak_flops`` each train row's MFU."""

    def __init__(
        self,
        tokens_per_step: int | None = None,
        script_keys: bool = False,
        flops_per_token: float | None = None,
        peak_flops: float | None = None,
    ) -> None:
        self.tokens_per_step = tokens_per_step
        self.script_keys = script_keys
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops

    @classmethod
    def of(cls, log: ExperimentLog, script_keys: bool = False) -> Payloads:
        """The payloads of ``log``'s rows (its tokens per step, FLOPs per token, peak)."""
        return cls(log.tokens_per_step, script_keys, log.flops_per_token, log.peak_flops)

    def extra_key(self, name: str) -> str:
        if self.script_keys and name not in _CLAIMED and not name.startswith(EXTRA_PREFIX):
            return name
        return EXTRA_PREFIX + name

    def axes(self, row: MetricsSnapshot) -> dict[str, Any]:
        out: dict[str, Any] = {
            "iteration": row.iteration,
            "gradient_step": row.gradient_step,
            "wallclock_time": float(row.wallclock_time),
        }
        if self.tokens_per_step is not None:
            out["tokens"] = row.gradient_step * self.tokens_per_step
            if self.flops_per_token is not None:
                out["flops"] = out["tokens"] * self.flops_per_token
        return out

    def train(self, row: MetricsSnapshot) -> dict[str, Any]:
        """The W&B row for a ``log_metrics`` row (no val_loss: evals get their own row)."""
        out = self.axes(row)
        for name in TRAIN_FIELDS:
            value = getattr(row, name)
            if value is not None:
                out[FIELD_TO_KEY[name]] = float(value)
        if row.extra:
            for key, value in row.extra.items():
                out[self.extra_key(key)] = float(value)
        if row.tokens_per_sec is not None:
            utilisation = mfu(float(row.tokens_per_sec), self.flops_per_token, self.peak_flops)
            if utilisation is not None:
                out[MFU_KEY] = utilisation
        return out

    def system(self, row: MetricsSnapshot) -> dict[str, Any]:
        """The W&B row of a system-metrics sample (see the module docstring)."""
        out = self.axes(row)
        del out["iteration"]  # a sample's number, not a training iteration
        for key, value in (row.extra or {}).items():
            out[SYSTEM_PREFIX + key] = float(value)
        return out

    def eval(self, row: MetricsSnapshot) -> dict[str, Any]:
        """The W&B row for an eval: the row's axes and its val_loss."""
        out = self.axes(row)
        if row.val_loss is not None:
            out[FIELD_TO_KEY["val_loss"]] = float(row.val_loss)
        eval_train = (row.extra or {}).get("eval_train_loss")
        if eval_train is not None:
            out[EXTRA_PREFIX + "eval_train_loss"] = float(eval_train)
        return out

    def update(self, row: MetricsSnapshot, values: Mapping[str, Any]) -> dict[str, Any]:
        """The W&B row for values added to a row: the row's axes and those values only."""
        out = self.axes(row)
        for name, value in values.items():
            if value is None:
                continue
            key = FIELD_TO_KEY.get(name) or self.extra_key(name)
            out[key] = float(value)
        return out


def summary_payload(log: ExperimentLog) -> dict[str, Any]:
    """The W&B summary of a run; one that never finished locally says so (``local_status``)."""
    if not log.finished:  # no summary was computed: take it from the history so far
        log = copy.copy(log)
        log.compute_summary()
    out: dict[str, Any] = {
        name: float(value) for name in SUMMARY_FIELDS if (value := getattr(log, name)) is not None
    }
    if not log.finished:
        out["local_status"] = log.status
    return out


# ---------------------------------------------------------------------------------------
# W&B -> local.


def _fits(target: str, value: Any) -> bool:
    if target not in NUMERIC_FIELDS:
        return True
    return type(value) in (int, float) and math.isfinite(value)


def unwrap_config(raw: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """W&B config -> ExperimentConfig kwargs: drop internals, unwrap ``{"value": ...}``.

    A value that is not a finite number for a numeric field (``"auto"``, ``"3e-4"``, None)
    is kept under ``wandb.<key>`` instead, so the run stays readable. A ``batch_size`` with
    ``gradient_accumulation_steps`` (nanoGPT's micro-batch) becomes the sequences of one
    optimizer step, the micro-batch kept as ``micro_batch_size``."""
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
    if "extra" in out:  # a reserved name in ExperimentConfig
        out["extra_"] = out.pop("extra")
    accumulation = out.get("gradient_accumulation_steps")
    batch = out.get("batch_size")
    if type(accumulation) is int and type(batch) is int and accumulation > 1:
        # nanoGPT's batch_size is a micro-batch; the local one counts a whole optimizer step
        out["micro_batch_size"] = batch
        out["batch_size"] = batch * accumulation
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
            else:
                if field == "learning_rate":
                    monitor = sorted(k for k in keys if k.startswith(_LR_MONITOR))
                    if monitor:  # Lightning's LearningRateMonitor: the first group's
                        fields.append((field, monitor[0]))
        chosen = {key for _, key in fields}
        if FIELD_TO_KEY["gradient_step"] in present:  # this project's row: derived values
            chosen.update(("tokens", "flops", MFU_KEY))
        extra = [
            (key, key[len(EXTRA_PREFIX) :] if key.startswith(EXTRA_PREFIX) else key)
            for key in keys
            if key not in self.claimed and key not in chosen and not key.startswith(_INTERNAL)
        ]
        return fields, extra

    def map(self, item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
        """``(fields, extra)``: the local fields found in ``item`` (raw values) and its
        other numbers as extra metrics (strings, media and tables are left out)."""
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
                for alt in self.aliases.get(field, ()):
                    if alt != key and item.get(alt) is not None:
                        fields[field] = item[alt]
                        break
        extra: dict[str, float] = {}
        for key, name in extra_plan:
            number = as_number(item[key])
            if number is not None:  # media, tables, strings: not a curve
                extra[name] = number
        return fields, extra

    def chosen_key(self, field: str, item: Mapping[str, Any]) -> str | None:
        """The key of ``item`` that :meth:`map` read ``field`` from."""
        for key in self.aliases.get(field, ()):
            if item.get(key) is not None:
                return key
        if field == "learning_rate":
            monitor = sorted(k for k in item if k.startswith(_LR_MONITOR))
            return monitor[0] if monitor else None
        return None


_CLAIMED = frozenset(key for keys in KEY_ALIASES.values() for key in keys)
