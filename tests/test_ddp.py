"""Data-parallel training: the training example under torchrun with 2 CPU processes (gloo).

One run is written (rank 0 alone tracks), the loss falls, tokens are counted for both ranks
(batch_size, tokens per step and tokens/s twice a single process's), each rank draws its own
batches, and --resume continues every rank from the checkpoint rank 0 wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import need

need("numpy")  # the training example's data
torch = need("torch")
need("torch.distributed.run")

from cs336_basics import ExperimentAnalyzer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "training_together.py"
TINY = [
    "--d-model=16", "--num-layers=1", "--num-heads=2", "--d-ff=32", "--context-length=16",
    "--batch-size=4", "--eval-iters=2", "--log-interval=2", "--max-iters=20",
    "--eval-interval=10", "--lr=1e-2", "--warmup-iters=3", "--no-plot", "--quiet",
]  # fmt: skip


def train(tmp_path: Path, name: str, ranks: int, *extra: str) -> str:
    launcher = [sys.executable]
    if ranks > 1:  # what `torchrun --standalone --nproc_per_node=N` runs
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    proc = subprocess.run(
        [
            *launcher,
            str(EXAMPLE),
            *TINY,
            f"--log-dir={tmp_path / name}",
            f"--checkpoint-dir={tmp_path / name / 'ckpt'}",
            f"--data-dir={tmp_path / 'data'}",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=dict(env, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def only_run(folder: Path):
    found = ExperimentAnalyzer(folder)
    found.load_all(quiet=True)
    assert found.problems == [] and len(found.logs) == 1, list(found.logs)
    (log,) = found.logs.values()
    return log


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 2-rank run straight through (shared by the tests below)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    return tmp_path, train(tmp_path, "two", 2)


@pytest.mark.slow
def test_torchrun_two_ranks_one_run_tokens_of_both(tmp_path, two_ranks):
    train(tmp_path, "one", 1)
    single = only_run(tmp_path / "one")
    folder, out = two_ranks
    assert out.count("run experiment_") == 1 and "x 2 ranks" in out  # rank 0 alone says it
    log = only_run(folder / "two")
    assert log.status == "finished"
    assert log.config.world_size == 2 and log.config.micro_batch_size == 4
    assert log.config.batch_size == 2 * single.config.batch_size == 8  # per step, all ranks
    assert log.tokens_per_step == 2 * single.tokens_per_step
    assert log.tokens_seen == 20 * 8 * 16
    for row in log.metrics_history:
        if row.tokens_per_sec is not None:  # tokens/s x seconds per step: both ranks' tokens
            assert row.tokens_per_sec * row.iter_time_ms / 1000 == pytest.approx(8 * 16)
    vals = [r.val_loss for r in log.metrics_history if r.val_loss is not None]
    trains = [r.train_loss for r in log.metrics_history if r.train_loss is not None]
    assert len(vals) == 2 and vals[-1] < vals[0] < 5.6 and trains[-1] < trains[0]
    # The ranks drew different batches: their logged mean differs from one rank's run.
    assert vals != [r.val_loss for r in single.metrics_history if r.val_loss is not None]


@pytest.mark.slow
def test_torchrun_resume_continues_every_rank(tmp_path, two_ranks):
    train(tmp_path, "run", 2, "--stop-at=9")
    ckpt = tmp_path / "run" / "ckpt" / "tinylm_pydoc.pt"
    saved = torch.load(ckpt, weights_only=False)
    assert saved["world_size"] == 2 and len(saved["rng_ranks"]) == 2
    numpy_states = [s["numpy"]["state"] for s in saved["rng_ranks"]]
    assert numpy_states[0] != numpy_states[1]  # a sampler per rank
    partial = only_run(tmp_path / "run")
    assert partial.status == "unfinished" and partial.last_iteration == 9
    train(tmp_path, "run", 2, f"--resume={ckpt}")
    log = only_run(tmp_path / "run")
    assert log.status == "finished" and log.run_id == partial.run_id
    assert [r.iteration for r in log.metrics_history] == list(range(1, 20, 2))
    assert [r.gradient_step for r in log.metrics_history] == list(range(2, 21, 2))
    # As if never interrupted: the same as a run straight through (every rank's RNG states).
    whole = only_run(two_ranks[0] / "two")
    assert [r.val_loss for r in log.metrics_history] == [r.val_loss for r in whole.metrics_history]
