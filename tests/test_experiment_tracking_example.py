"""``python -m cs336_basics.experiment_tracking_example``: the packaged example runs and
compares its runs."""

import subprocess
import sys


def test_example_module_runs_and_compares(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cs336_basics.experiment_tracking_example",
            "--log-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "== 1. Basic tracking" in out and "== 3. Analysis and comparison" in out
    assert "Best experiment: example_lr_3e-03" in out  # the diverged 1e-2 run is not picked
    assert "diverged" in out
    assert len(list(tmp_path.glob("experiment_example_*.json"))) == 5
