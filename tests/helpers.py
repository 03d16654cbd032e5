"""Small helpers shared by tests (simulated curves, no training framework needed).

Only the core install is needed to import this module (``pip install -e . pytest
hypothesis``): tests that need an optional extra say so with :func:`requires` or
:func:`need`, and are skipped, with the reason, where it is missing.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker

#: Where each optional module comes from: the project's extra (pyproject.toml's
#: ``[project.optional-dependencies]``), else the package to install.
INSTALL = {
    "numpy": "cs336-basics[train]",
    "torch": "cs336-basics[train]",
    "matplotlib": "cs336-basics[plot]",
    "pandas": "cs336-basics[pandas]",
    "plotly": "cs336-basics[dashboard]",
    "wandb": "cs336-basics[wandb]",
    "psutil": "cs336-basics[system]",
    "optuna": "cs336-basics[sweep]",
    "yaml": "pyyaml",
}


def _reason(modules: list[str]) -> str:
    wanted = sorted({f"'{INSTALL.get(m.split('.')[0], m.split('.')[0])}'" for m in modules})
    return f"needs {', '.join(modules)} (pip install {' '.join(wanted)}, or '.[dev]')"


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def requires(*modules: str) -> pytest.MarkDecorator:
    """Skip a test (a decorator) or a whole file (``pytestmark = requires(...)``) unless
    every one of ``modules`` (top-level names) is installed, saying which extra brings it.
    Nothing is imported to find out."""
    absent = _missing(modules)
    return pytest.mark.skipif(bool(absent), reason=_reason(absent))


def need(module: str) -> ModuleType:
    """Import ``module`` inside a test, or skip the test saying which extra brings it."""
    return pytest.importorskip(module, reason=_reason([module]))


class NumpyValue(str):
    """A value numpy makes, written as code (``np.float32(2.5)``), for parameter lists that
    must not need numpy to be collected: :func:`made` builds it inside the test."""

    def make(self) -> object:
        import numpy as np

        return eval(self, {"np": np})


def by_numpy(code: str, *more: object) -> object:
    """A ``parametrize`` case whose value numpy makes (``more``: the case's other values),
    skipped where numpy is missing; its id is the code."""
    return pytest.param(NumpyValue(code), *more, marks=requires("numpy"), id=code)


def made(value: object) -> object:
    """The value of a case: built now if numpy makes it (:func:`by_numpy`)."""
    return value.make() if isinstance(value, NumpyValue) else value


#: The guide's per-row fields and CSV columns, in its order: written out here, not taken
#: from the library, so a renamed or reordered field fails the tests.
GUIDE_COLUMNS = [
    "iteration",
    "gradient_step",
    "wallclock_time",
    "train_loss",
    "val_loss",
    "learning_rate",
    "tokens_per_sec",
    "iter_time_ms",
]


def simulated_loss(i: int, lr: float = 1e-3) -> float:
    return 2.0 + 3.0 * math.exp(-i * lr * 5) + 0.01 * math.sin(i)


def run_simulated(
    log_dir: Path,
    name: str,
    iters: int = 50,
    eval_every: int = 10,
    lr: float = 1e-3,
    diverge_at: int | None = None,
    finish: bool = True,
    **config: object,
) -> ExperimentTracker:
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name=name, max_learning_rate=lr, **config), log_dir=log_dir
    )
    tracker.start()
    for i in range(iters):
        loss = float("nan") if diverge_at is not None and i >= diverge_at else simulated_loss(i, lr)
        tracker.log_metrics(
            iteration=i,
            train_loss=loss,
            learning_rate=lr,
            tokens_per_sec=1000.0,
            iter_time_ms=1.5,
        )
        tracker.increment_gradient_step()
        if (i + 1) % eval_every == 0:
            tracker.log_eval(iteration=i, train_loss=loss, val_loss=loss + 0.1)
    if finish:
        tracker.finish()
        tracker.save()
    return tracker


@contextmanager
def expect_log(caplog: pytest.LogCaptureFixture, pattern: str, level: int = logging.WARNING):
    """Assert that the block logs a message matching ``pattern`` to ``cs336_basics``."""
    caplog.set_level(logging.INFO, logger="cs336_basics")
    start = len(caplog.records)
    yield
    messages = [
        record.getMessage()
        for record in caplog.records[start:]
        if record.name.startswith("cs336_basics") and record.levelno >= level
    ]
    assert any(re.search(pattern, m, re.S) for m in messages), messages


def simulate_death(tracker: ExperimentTracker) -> None:
    """Leave the run as a killed process would: journal written so far, no close record,
    no save, and the run lock dropped (the kernel drops it when a process dies)."""
    tracker._saves.journal.close()  # writes what is pending, appends nothing
    tracker._saves.journal = None
    os.close(tracker._lock._fd)
    tracker._lock = None
    tracker._closed = True


def run_files_in(folder: Path) -> list[str]:
    """The names of the files in ``folder``, less the documents' columnar caches
    (``.<stem>.columns``, derived files that may or may not be there)."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if not (p.name.startswith(".") and p.name.endswith(".columns"))
    )


def dead_pid() -> int:
    """The pid of a process that has exited (a child started and waited for)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


#: Environment of a gated W&B mirror (see :func:`build_sink`): the file whose existence
#: opens the gate, and the first iteration held back until then.
MIRROR_GATE = "CS336_TEST_MIRROR_GATE"
MIRROR_HOLD_FROM = "CS336_TEST_MIRROR_HOLD_FROM"


def build_sink(settings: dict):
    """A mirror process's sink (``sink.process_module = "helpers"``): the W&B mirror, held
    before it sends the row of iteration ``$CS336_TEST_MIRROR_HOLD_FROM`` until the file
    ``$CS336_TEST_MIRROR_GATE`` exists (at most two minutes): a mirror still draining, for
    as long as a test needs it to be."""
    import time

    from cs336_basics.wandb_adapter.mirror import build_sink as build_wandb_sink

    sink = build_wandb_sink(settings)
    gate = os.environ.get(MIRROR_GATE)
    if gate:
        hold_from = int(os.environ.get(MIRROR_HOLD_FROM, "0"))
        emit = sink.emit

        def held(row):
            deadline = time.monotonic() + 120
            while row.iteration >= hold_from and not os.path.exists(gate):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the test never opened the mirror's gate {gate}")
                time.sleep(0.02)
            emit(row)

        sink.emit = held
    return sink


def unblock_fifos(*fifos: Path) -> None:
    """Open each FIFO for writing and close it: a reader blocked opening it gets EOF."""
    for fifo in fifos:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader waiting: nothing to unblock
            continue
        os.close(fd)


# ---------------------------------------------------------------------------------------
# Runs and rows for the tests of the history, saves, caches and loading.


def plain(value):
    """``value`` with every number as ``repr(float(...))``: NaN equal to NaN; 1 and 1.0
    alike (see :func:`same_rows`)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    return value


def same_rows(a, b) -> bool:
    """Rows equal, NaN equal to NaN. A column that mixes ints and floats is stored as
    floats (as the tracker, which logs floats, never makes one): compared as floats."""
    if isinstance(a, list) or isinstance(b, list):
        return len(a) == len(b) and all(same_rows(x, y) for x, y in zip(a, b, strict=True))
    return plain(a.__dict__) == plain(b.__dict__)


def started_tracker(log_dir: Path, name: str = "week") -> ExperimentTracker:
    tracker = ExperimentTracker(ExperimentConfig(experiment_name=name), log_dir=log_dir)
    tracker.start()
    return tracker


def hold_document_writes(monkeypatch: pytest.MonkeyPatch, gate: threading.Event) -> None:
    """Hold every background document write until ``gate`` is set."""
    import cs336_basics.store.codec as codec

    real = codec.encode_chunk

    def held(chunk, pause=None):
        gate.wait(10)
        return real(chunk, pause)

    monkeypatch.setattr(codec, "encode_chunk", held)


def finished_run(log_dir: Path, rows: int = 3000) -> Path:
    """A finished run named "cached" (notes "cached run") of ``rows`` rows with a
    ``grad_norm`` extra, an eval every 500 iterations (NaN at 1000: diverged); its document."""
    tracker = started_tracker(log_dir, "cached")
    for i in range(rows):
        tracker.log_metrics(iteration=i, train_loss=3.0 - i * 1e-4, grad_norm=float(i % 7))
        if i % 500 == 0:
            tracker.log_eval(iteration=i, val_loss=float("nan") if i == 1000 else 2.0)
    tracker.finish(notes="cached run")
    return tracker.path


def run_sweep(log_dir: Path, n: int) -> None:
    """``n`` finished runs ``lr0``, ``lr1``, ...: run k has max_learning_rate 10**-k, 50
    rows and one eval (val_loss 2 + k)."""
    for k in range(n):
        tracker = ExperimentTracker(
            ExperimentConfig(experiment_name=f"lr{k}", max_learning_rate=10.0**-k),
            log_dir=log_dir,
        )
        tracker.start()
        for i in range(50):
            tracker.log_metrics(iteration=i, train_loss=3.0 / (1 + i + k))
        tracker.log_eval(iteration=49, val_loss=2.0 + k)
        tracker.finish()
