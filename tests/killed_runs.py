"""Runs killed for real (``SIGKILL``) at random points, for the tests that check that every
command, the report and the page show the same best and last losses for them.

Run as a script, this is the child: it trains a fake loop (noisy losses, an eval every 7
iterations, a ``save()`` every 40) and prints ``ITER i`` now and then, until it is killed.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


def _child(log_dir: str, name: str, seed: int) -> None:
    from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker

    rng = random.Random(seed)
    tracker = ExperimentTracker(
        ExperimentConfig(experiment_name=name, batch_size=8, context_length=16, vocab_size=256),
        log_dir=log_dir,
    )
    tracker.start()
    i = 0
    while True:
        loss = 2.0 + 3.0 * math.exp(-i / 60) + rng.uniform(-0.3, 0.3)
        tracker.log_metrics(iteration=i, train_loss=loss, learning_rate=1e-3)
        tracker.increment_gradient_step()
        if i % 7 == 6:
            tracker.log_eval(iteration=i, val_loss=loss + rng.uniform(0.0, 0.2))
        if i % 40 == 39:
            tracker.save()
        if i % 10 == 0:
            print(f"ITER {i}", flush=True)
        i += 1
        time.sleep(0.0005)


def killed_runs(log_dir: Path, count: int = 4, seed: int = 1234) -> list[str]:
    """Start ``count`` runs and ``SIGKILL`` each once it reached an iteration drawn at random
    (seeded), after a random extra delay; returns their names. Whatever each left on disk
    (document, kept and live journals, a torn line) is what the readers must agree on."""
    rng = random.Random(seed)
    import cs336_basics

    env = dict(os.environ)
    src = str(Path(cs336_basics.__file__).resolve().parents[1])  # the package this test uses
    env["PYTHONPATH"] = os.pathsep.join([src, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else src
    names = [f"killed_{k}" for k in range(count)]
    children = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(log_dir), name, str(rng.randrange(10**6))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in names
    ]
    try:
        for child in children:
            target = rng.randrange(10, 300)
            assert child.stdout is not None
            deadline = time.monotonic() + 60
            for line in child.stdout:
                if line.startswith("ITER ") and int(line.split()[1]) >= target:
                    break
                if time.monotonic() > deadline:
                    break
            else:
                raise AssertionError(
                    f"child ended early: {child.stderr.read() if child.stderr else ''}"
                )
            time.sleep(rng.uniform(0.0, 0.05))
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            assert child.returncode == -signal.SIGKILL
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
            for stream in (child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
    return names


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
