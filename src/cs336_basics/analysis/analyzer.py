"""``ExperimentAnalyzer``: load many runs (local files, W&B) and compare them."""

from __future__ import annotations

import csv
import fnmatch
import logging
import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ..core import env, plugins
from ..core.config import OPTUNA_TRIAL, SWEEP_KEYS, ExperimentConfig
from ..core.errors import LogFormatError, UnknownRunError, UsageError
from ..core.log import ExperimentLog, import_pandas
from ..core.progress import progress
from ..core.row import ROW_FIELDS
from ..core.text import fmt, format_duration, format_summary, table
from ..store.cache import read_cache
from ..store.document import read_document
from ..store.layout import run_files
from ..store.load import load_run
from .budget import BudgetValue, values_at

logger = logging.getLogger("cs336_basics")
#: Metric names accepted by ``get_best_experiment`` and what they read.
BEST_METRICS = {
    "val_loss": "best_val_loss",
    "train_loss": "best_train_loss",
    "best_val_loss": "best_val_loss",
    "best_train_loss": "best_train_loss",
    "final_val_loss": "final_val_loss",
    "final_train_loss": "final_train_loss",
}
_CONFIG_SKIP = {"experiment_name"}


def write_csv(log: ExperimentLog, path: Path) -> Path:
    """The guide's CSV: exactly its eight columns, in its order; NaN as ``nan``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(ROW_FIELDS)
        for row in log.metrics_history:
            writer.writerow(
                [
                    ""
                    if (v := getattr(row, name)) is None
                    else repr(float(v))
                    if isinstance(v, float)
                    else v
                    for name in ROW_FIELDS
                ]
            )
    return path


#: Parse in worker processes only when at least this many documents need it.
_PARALLEL_MIN = 4


def _parse_in_parallel(files: list[Path], workers: int | None, show: bool | None) -> None:
    """Parse the documents that have no current cache in worker processes, which write
    their caches (the loads that follow read those). Nothing happens where caches cannot
    be written (``CS336_NO_CACHE``, a read-only folder: the loads parse once), inside a
    daemon process, or where no safe start method exists (see :func:`_pool_context`); a
    failing pool (a worker killed) leaves the rest to the loads."""
    count = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if count < 2 or env.caches_off() or multiprocessing.current_process().daemon:
        return
    todo = [p for p in files if p.suffix == ".json" and read_cache(p) is None]
    if len(todo) < _PARALLEL_MIN or not os.access(todo[0].parent, os.W_OK):
        return
    context = _pool_context()
    if context is None:
        return
    pool = ProcessPoolExecutor(min(count, len(todo)), mp_context=context)
    try:
        results = pool.map(_warm_cache, todo, chunksize=max(1, len(todo) // (count * 8)))
        for _ in progress(results, len(todo), "Indexing runs", enabled=show):
            pass
    except Exception as exc:  # BrokenProcessPool, OSError, ...: the loads parse instead
        logger.warning("parsing runs in worker processes failed (%s); parsing them here", exc)
    finally:  # (Ctrl-C included: what has not started is dropped, not waited for)
        pool.shutdown(wait=True, cancel_futures=True)


def _pool_context() -> Any:
    """A start method that re-runs none of the caller's code: ``fork`` while this process
    has one thread (a fork copies other threads' locks, not the threads); ``forkserver``
    when ``__main__`` is no file (a notebook, a REPL: nothing to re-import); else None.
    A script's ``__main__`` with threads would be re-run by the other methods (the guide's
    snippets have no ``if __name__ == "__main__"`` guard)."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    main = sys.modules.get("__main__")
    if "forkserver" in methods and not getattr(main, "__file__", None):
        return multiprocessing.get_context("forkserver")
    return None


def _warm_cache(path: Path) -> None:
    """Parse one document and write its cache (in a worker; errors are the load's to
    report)."""
    try:
        read_document(path, write=True)
    except Exception:
        pass


def _skipped(path: Path, exc: BaseException) -> str:
    """``skipped FILE: why`` (the file named once, though the error names it too)."""
    reason = str(exc)
    for prefix in (f"{path}: ", f"{path} "):
        if reason.startswith(prefix):
            reason = reason[len(prefix) :]
            break
    return f"skipped {path}: {reason}"


def _finite_or_none(value: Any) -> float | None:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class ExperimentAnalyzer:
    """Loads runs and compares them.

    ``logs`` maps a key to each run: its experiment name, or, when several runs share a
    name, the name for the latest and the run id (file stem) for each older one. Any method
    taking a name also takes a run id.
    """

    def __init__(self, log_dir: str | Path = "experiment_logs") -> None:
        self.log_dir = Path(log_dir)
        self.logs: dict[str, ExperimentLog] = {}
        self.problems: list[str] = []

    # ------------------------------------------------------------------ loading
    def load_all(
        self, *, quiet: bool = False, workers: int | None = None
    ) -> dict[str, ExperimentLog]:
        """Load every run in ``log_dir``; unreadable files are reported and skipped.

        A document is read from its columnar cache when that is current (a listing of
        hundreds of runs then reads only their headers). Documents without one are parsed
        first by ``workers`` processes (default: one per CPU, at most 8), which leave
        caches behind; progress is shown on a terminal unless ``quiet``.
        """
        self.problems = []
        if not self.log_dir.is_dir():
            self.problems.append(f"{self.log_dir}: no such directory")
            if not quiet:
                print(f"warning: {self.problems[-1]}", file=sys.stderr)
            return self.logs
        files = run_files(self.log_dir)
        show = None if not quiet else False
        _parse_in_parallel(files, workers, show)
        loaded: list[ExperimentLog] = []
        for path in progress(files, len(files), "Loading runs", enabled=show):
            try:
                log = load_run(path, on_problem=self.problems.append).log
            except (LogFormatError, OSError) as exc:  # decoding turns any bad value into these
                self.problems.append(_skipped(path, exc))
                continue
            loaded.append(log)
        if not quiet:
            for problem in self.problems:
                print(f"warning: {problem}", file=sys.stderr)
        for log in loaded:
            self.add(log)
        return self.logs

    def add(self, log: ExperimentLog) -> str:
        """Add a run (e.g. pulled from W&B); returns its key in ``logs``."""
        runs = [v for v in self.logs.values() if v.run_id != log.run_id or not log.run_id]
        runs.append(log)
        self.logs = self._keyed(runs)
        for key, value in self.logs.items():
            if value is log:
                return key
        raise AssertionError("unreachable")

    @staticmethod
    def _keyed(runs: list[ExperimentLog]) -> dict[str, ExperimentLog]:
        by_name: dict[str, list[ExperimentLog]] = {}
        for log in runs:
            by_name.setdefault(log.experiment_name, []).append(log)
        keyed: dict[str, ExperimentLog] = {}
        for name, group in by_name.items():
            group.sort(key=lambda r: (r.start_time or "", r.run_id))
            for older in group[:-1]:
                keyed[older.run_id or f"{name}#{id(older)}"] = older
            keyed[name] = group[-1]
        return dict(sorted(keyed.items(), key=lambda kv: (kv[1].start_time or "", kv[0])))

    def get(self, name: str) -> ExperimentLog:
        """A run by key, run id or experiment name (the latest of that name)."""
        if name in self.logs:
            return self.logs[name]
        for log in self.logs.values():
            if log.run_id == name:
                return log
        known = ", ".join(self.logs) or "none loaded (call load_all() first)"
        raise UnknownRunError(f"no experiment {name!r}; known: {known}")

    def select(self, patterns: list[str] | None) -> dict[str, ExperimentLog]:
        """Runs matching any pattern (all when none given).

        A pattern equal to a run's key, run id or experiment name selects exactly the runs
        it names (so ``lr[1e-3]`` is a name, not a character class); any other pattern is a
        glob matched against the same three.
        """
        if not patterns:
            return dict(self.logs)
        chosen: dict[str, ExperimentLog] = {}
        for pattern in patterns:
            hits = self._matching(pattern, glob=False) or self._matching(pattern, glob=True)
            if not hits:
                raise UnknownRunError(f"no experiment matches {pattern!r}")
            chosen.update(hits)
        return chosen

    def filter(
        self, tags: Iterable[str] = (), groups: Iterable[str] = ()
    ) -> dict[str, ExperimentLog]:
        """The loaded runs that have every tag of ``tags`` and belong to one of ``groups``
        (no tags, no groups: no condition)."""
        wanted, among = set(tags), set(groups)
        return {
            key: log
            for key, log in self.logs.items()
            if wanted.issubset(log.tags) and (not among or log.group in among)
        }

    def _matching(self, pattern: str, *, glob: bool) -> dict[str, ExperimentLog]:
        """Runs whose key, run id or name equals ``pattern`` (or matches it as a glob)."""
        if glob:
            return {
                key: log
                for key, log in self.logs.items()
                if fnmatch.fnmatchcase(key, pattern)
                or fnmatch.fnmatchcase(log.run_id, pattern)
                or fnmatch.fnmatchcase(log.experiment_name, pattern)
            }
        return {
            key: log
            for key, log in self.logs.items()
            if pattern in (key, log.run_id, log.experiment_name)
        }

    def in_group(self, group: str) -> dict[str, ExperimentLog]:
        """The runs whose group is ``group`` (a sweep's runs: its study's name, or a W&B
        sweep's id); :class:`UnknownRunError` listing the groups there are when none is."""
        runs = {key: log for key, log in self.logs.items() if log.group == group}
        if not runs:
            groups = sorted({log.group for log in self.logs.values() if log.group})
            raise UnknownRunError(
                f"no run in group {group!r}; groups: {', '.join(groups) or 'none'}"
            )
        return runs

    # ------------------------------------------------------------------ comparing
    def to_pandas(self, names: list[str] | None = None, *, config: Any = None) -> Any:
        """The histories of the selected runs (all by default) as one long
        ``pandas.DataFrame``: ``run`` (the key in ``logs``), ``run_id``,
        ``experiment_name``, ``config.<key>`` columns, then each run's history columns as
        :meth:`ExperimentLog.to_pandas` gives them (an extra metric one run lacks is NaN
        for it). ``config``: None for the config keys whose values differ between the
        selected runs (what a sweep varies), a list of keys, or False for none. Group by
        ``run`` (or a config column) to plot or aggregate; needs pandas.
        """
        pandas = import_pandas("ExperimentAnalyzer.to_pandas()")
        selected = self.select(names)
        logs = list(selected.values())
        if config is None:
            keys = self.differing_config_keys(logs)
        elif config is False:
            keys = []
        elif isinstance(config, (list, tuple)) and all(isinstance(k, str) for k in config):
            keys = list(config)
        else:
            raise TypeError(f"config: expected None, False or a list of keys, got {config!r:.60}")
        frames = []
        for key, log in selected.items():
            frame = log.to_pandas()
            values = log.config.to_dict()
            front: dict[str, Any] = {
                "run": key,
                "run_id": log.run_id,
                "experiment_name": log.experiment_name,
            }
            front.update({f"config.{k}": values.get(k) for k in keys})
            clash = [name for name in front if name in frame.columns]
            if clash:
                raise ValueError(
                    f"run {key!r} has a metric named {clash[0]!r}, a column this frame "
                    "names the run with; rename the metric to put it in one frame"
                )
            for position, (name, value) in enumerate(front.items()):
                frame.insert(position, name, [value] * len(frame))
            frames.append(frame)
        if not frames:
            config_columns = [f"config.{k}" for k in keys]
            return pandas.DataFrame(
                columns=["run", "run_id", "experiment_name", *config_columns, *ROW_FIELDS]
            )
        out = pandas.concat(frames, ignore_index=True)
        out["run"] = out["run"].astype("category")
        return out

    def differing_config_keys(self, logs: list[ExperimentLog]) -> list[str]:
        """Config keys whose values are not the same across ``logs``."""
        dicts = [log.config.to_dict() for log in logs]
        keys: list[str] = []
        for d in dicts:
            keys += [k for k in d if k not in keys and k not in _CONFIG_SKIP]
        if len(dicts) < 2:
            return []
        return [k for k in keys if len({repr(d.get(k)) for d in dicts}) > 1]

    def comparison_rows(
        self, names: list[str] | None = None, sort_by: str | None = None
    ) -> tuple[list[str], list[list[Any]]]:
        """Headers and rows of the comparison (used by the table and the CLI)."""
        selected = self.select(names)
        logs = list(selected.values())
        config_keys = self.differing_config_keys(logs)
        headers = [
            "experiment",
            "status",
            "iters",
            "steps",
            "tokens",
            *config_keys,
            "best_train",
            "best_val",
            "final_train",
            "final_val",
            "duration",
        ]
        rows = []
        for key, log in selected.items():
            cfg = log.config.to_dict()
            results = log.results()
            rows.append(
                [
                    key,
                    results.status,
                    results.iterations,
                    results.gradient_steps,
                    results.tokens,
                    *[cfg.get(k) for k in config_keys],
                    results.best_train_loss,
                    results.best_val_loss,
                    results.final_train_loss,
                    results.final_val_loss,
                    format_duration(results.duration_seconds),
                ]
            )
        if sort_by:
            if sort_by not in headers:
                raise UsageError(
                    f"sort: unknown column {sort_by!r}; expected one of {', '.join(headers)}"
                )
            col = headers.index(sort_by)

            def sort_key(row: list[Any]) -> tuple[int, Any]:
                value = row[col]
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return (0, value) if math.isfinite(value) else (1, 0)
                return (0 if value is not None else 1, str(value))

            rows.sort(key=sort_key)
        return headers, rows

    def get_comparison_table(
        self, names: list[str] | None = None, sort_by: str | None = None
    ) -> str:
        """A text table of the runs; config columns only where runs differ."""
        if not self.logs:
            return "(no experiments loaded)"
        headers, rows = self.comparison_rows(names, sort_by)
        return table(headers, rows)

    def sweep_rows(
        self, group: str, metric: str = "best_val_loss"
    ) -> tuple[list[str], list[list[Any]]]:
        """Headers and rows of :meth:`sweep_table` (for the CLI and scripts): one row per
        run of ``group``: ``trial`` (the Optuna trial number, else the W&B run id, else the
        run id), ``run`` (its key), the hyperparameters that differ between the runs, the
        objective ``metric`` (a name of ``BEST_METRICS``), ``status`` (``pruned`` for a trial
        the pruner stopped) and ``iters``; sorted by the objective, lowest first (diverged
        runs and runs without a finite value last)."""
        field = BEST_METRICS.get(metric)
        if field is None:
            raise UsageError(
                f"metric: unknown {metric!r}; expected one of {', '.join(BEST_METRICS)}"
            )
        runs = self.in_group(group)
        params = [k for k in self.differing_config_keys(list(runs.values())) if k not in SWEEP_KEYS]
        headers = ["trial", "run", *params, field, "status", "iters"]
        rows = []
        for key, log in runs.items():
            config = log.config.to_dict()
            results = log.results()
            trial = config.get(OPTUNA_TRIAL)
            if trial is None:
                mirror = log.mirrors.get("wandb")
                trial = (mirror.get("run_id") if isinstance(mirror, dict) else None) or log.run_id
            rows.append(
                [
                    trial,
                    key,
                    *[config.get(k) for k in params],
                    getattr(results, field),
                    results.status,
                    results.iterations,
                ]
            )

        def objective(row: list[Any]) -> tuple[int, float, str]:
            value = _finite_or_none(row[len(params) + 2])
            if value is None or row[-2] == "diverged":  # never ahead of a sound trial
                return (1, 0.0 if value is None else value, str(row[1]))
            return (0, value, str(row[1]))

        rows.sort(key=objective)
        return headers, rows

    def sweep_table(self, group: str, metric: str = "best_val_loss") -> str:
        """A sweep as one text table: trial, hyperparameters, the objective ``metric``
        (best val loss by default), status (``pruned`` included), iterations; sorted by the
        objective, best first. ``group``: the study's name (or a W&B sweep's id)."""
        headers, rows = self.sweep_rows(group, metric)
        return table(headers, rows)

    def print_summary(self, name: str) -> None:
        print(format_summary(self.get(name)))

    def get_best_experiment(self, metric: str = "val_loss") -> tuple[str, float]:
        """``(key, value)`` of the run with the lowest ``metric``; diverged runs never win."""
        field = BEST_METRICS.get(metric)
        if field is None:
            raise UsageError(
                f"metric: unknown {metric!r}; expected one of {', '.join(BEST_METRICS)}"
            )
        best: tuple[str, float] | None = None
        for key, log in self.logs.items():
            results = log.results()
            if results.diverged_at is not None:
                continue
            value = _finite_or_none(getattr(results, field))
            if value is not None and (best is None or value < best[1]):
                best = (key, value)
        if best is None:
            raise UsageError(f"no loaded experiment has a finite {field}")
        return best

    def export_csv(self, name: str, path: str | Path | None = None) -> Path:
        """Write a run's history as CSV with the guide's columns; returns the path."""
        log = self.get(name)
        target = Path(path) if path is not None else self.log_dir / f"{name}_metrics.csv"
        return write_csv(log, target)

    # ------------------------------------------------------------------ at a budget
    def values_at(
        self,
        axis: str,
        budget: float,
        metrics: tuple[str, ...] | list[str] = ("train_loss", "val_loss"),
        *,
        names: list[str] | None = None,
        interpolate: bool = False,
    ) -> dict[str, dict[str, BudgetValue]]:
        """Each selected run's ``metrics`` at exactly ``budget`` on ``axis`` (``tokens``,
        ``gradient_step``, ``iteration``, ``wallclock`` in seconds, ``flops``): run key ->
        metric -> :class:`~.budget.BudgetValue`. The last value logged at or before the
        budget, with how far before; interpolated only with ``interpolate=True`` (and
        labelled); a run that never reached the budget says so (see ``analysis.budget``)."""
        return {
            key: values_at(log, axis, budget, metrics, interpolate=interpolate)
            for key, log in self.select(names).items()
        }

    def values_at_frame(
        self,
        axis: str,
        budget: float,
        metrics: tuple[str, ...] | list[str] = ("train_loss", "val_loss"),
        *,
        names: list[str] | None = None,
        interpolate: bool = False,
    ) -> Any:
        """:meth:`values_at` as a ``pandas.DataFrame``, one row per run and metric: ``run``,
        ``run_id``, ``experiment_name``, then the fields of ``BudgetValue`` (``metric``,
        ``axis``, ``budget``, ``value``, ``at``, ``before``, ``iteration``, ``reached``,
        ``interpolated``, ``how``). Needs pandas."""
        pandas = import_pandas("ExperimentAnalyzer.values_at_frame()")
        records = []
        found = self.values_at(axis, budget, metrics, names=names, interpolate=interpolate)
        for key, by_metric in found.items():
            log = self.logs[key]
            for value in by_metric.values():
                records.append(
                    {
                        "run": key,
                        "run_id": log.run_id,
                        "experiment_name": log.experiment_name,
                        **value.to_dict(),
                    }
                )
        columns = ["run", "run_id", "experiment_name", "metric", "axis", "budget", "value"]
        columns += ["at", "before", "iteration", "reached", "interpolated", "how"]
        return pandas.DataFrame.from_records(records, columns=columns)

    def budget_rows(
        self,
        axis: str,
        budget: float,
        metrics: tuple[str, ...] | list[str] = ("train_loss", "val_loss"),
        *,
        names: list[str] | None = None,
        interpolate: bool = False,
    ) -> tuple[list[str], list[list[Any]]]:
        """Headers and rows of a comparison at a budget (``cs336-exp compare --at``): per
        run its status, then per metric its value and how far before the budget it was
        logged (``-`` for interpolated values), and a note (``interpolated``, ``not
        reached: got to X``, ``no tokens per step``, ...)."""
        found = self.values_at(axis, budget, metrics, names=names, interpolate=interpolate)
        headers = ["experiment", "status"]
        for metric in metrics:
            headers += [metric, f"{metric}_before"]
        headers.append("note")
        rows = []
        for key, by_metric in found.items():
            row: list[Any] = [key, self.logs[key].display_status]
            notes: list[str] = []
            for metric in metrics:
                value = by_metric[metric]
                row += [value.value, value.before if value.how == "before" else None]
                note = budget_note(value)
                if note and note not in notes:
                    notes.append(note)
            row.append("; ".join(notes) or None)
            rows.append(row)
        return headers, rows

    def load_wandb(self, path: str, **kwargs: Any) -> list[str]:
        """Pull runs of a W&B project (``"entity/project"``); see ``cs336_basics.pull_runs``."""
        pull_runs = plugins.load(plugins.PULL_RUNS)
        keys = []
        for log in pull_runs(path, **kwargs):
            keys.append(self.add(log))
        return keys


def budget_note(value: BudgetValue) -> str | None:
    """What a comparison at a budget says beside a value (None for a plain one)."""
    if value.how == "interpolated":
        return "interpolated"
    if value.how == "not_reached":
        return f"not reached (got to {value.at:.4g})"
    if value.how == "no_axis":
        unknown = "tokens per step" + (" or FLOPs per token" if value.axis == "flops" else "")
        return f"no {value.axis} axis ({unknown} unknown)"
    if value.how == "none_before":
        return f"no {value.metric} before the budget"
    return None


def print_experiment_summary(log_dir: str | Path = "experiment_logs") -> None:
    """Load every run in ``log_dir``, print the comparison table and the best run."""
    analyzer = ExperimentAnalyzer(log_dir=log_dir)
    analyzer.load_all()
    print(analyzer.get_comparison_table())
    for metric in ("val_loss", "train_loss"):
        try:
            name, value = analyzer.get_best_experiment(metric)
        except ValueError:
            continue
        print(f"Best by {metric}: {name} ({fmt(value, 6)})")
        break


__all__ = ["ExperimentAnalyzer", "ExperimentConfig", "print_experiment_summary", "write_csv"]
