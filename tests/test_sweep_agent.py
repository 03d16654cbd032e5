"""The training example started exactly as a W&B sweep agent starts it (wandb 0.31's
``wandb_agent.Agent._command_run``: environment and command line built by wandb's own
functions from examples/sweep.yaml), against offline W&B: the mirror joins the agent's run,
the offline run records the sweep, and the metric sweep.yaml declares is there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import wandb_records as wr
from helpers import requires

from cs336_basics import ExperimentAnalyzer

# The training example (torch, numpy) started as wandb's agent starts it, from sweep.yaml.
pytestmark = requires("torch", "numpy", "wandb", "yaml")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "training_together.py"


def example_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("training_together", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_agents_key_value_arguments_parse():
    """An agent passes ``--name=value`` (``${args}``), with the sweep's parameter names."""
    import yaml

    sweep = yaml.safe_load((REPO / "examples" / "sweep.yaml").read_text())
    args = example_module().parse_args(
        ["--lr=0.001", "--warmup_iters=5", "--batch_size=8", "--weight_decay=0.05"]
    )
    assert (args.lr, args.warmup_iters, args.batch_size, args.weight_decay) == (1e-3, 5, 8, 0.05)
    known = {a.dest for a in example_module().build_parser()._actions}
    assert set(sweep["parameters"]) <= known  # every parameter the sweep may set


def agent_command(values: dict, extra: list[str]) -> list[str]:
    """The command the agent runs for a run with these parameter values (its own code)."""
    import yaml
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    spec = yaml.safe_load((REPO / "examples" / "sweep.yaml").read_text())
    command = sweep_utils.create_sweep_command(spec["command"])
    sweep_vars = sweep_utils.create_sweep_command_args(
        {"args": {k: {"value": v} for k, v in values.items()}}
    )
    sweep_vars["interpreter"] = [sys.executable]  # the agent says "python": this venv's
    sweep_vars["program"] = [spec["program"]]
    sweep_vars["env"] = ["/usr/bin/env"]
    out: list[str] = []
    for part in command:
        if part.startswith("${") and part.endswith("}"):
            out += sweep_vars.get(part[2:-1]) or []
        else:
            out.append(part)
    # The example's tiny settings, before the agent's ${args} (as a sweep.yaml would list).
    at = out.index(sweep_vars["args"][0])
    return out[:at] + extra + out[at:]


@pytest.mark.slow
def test_started_by_a_sweep_agent_the_mirror_joins_the_agents_run(tmp_path):
    from wandb.sdk.lib import config_util

    sweep_id, run_id = "swp4x2ab", "run7k3zq"
    values = {"lr": 0.004, "warmup_iters": 2, "batch_size": 8, "weight_decay": 0.05}
    # What Agent._command_run does before starting the process.
    param_path = tmp_path / "wandb" / f"sweep-{sweep_id}" / f"config-{run_id}.yaml"
    config_util.save_config_file_from_dict(
        str(param_path), {k: {"value": v} for k, v in values.items()}
    )
    env = dict(
        os.environ,
        WANDB_SWEEP_ID=sweep_id,
        WANDB_RUN_ID=run_id,
        WANDB_SWEEP_PARAM_PATH=str(param_path),
        WANDB_PROJECT="cs336-sweep",
        PYTHONUNBUFFERED="1",
    )
    logs = tmp_path / "logs"
    tiny = [
        "--d-model=16", "--num-layers=1", "--num-heads=2", "--d-ff=32", "--context-length=16",
        "--eval-iters=2", "--log-interval=2", "--max-iters=12", "--eval-interval=4",
        f"--log-dir={logs}", f"--data-dir={tmp_path / 'data'}",
        f"--checkpoint-dir={tmp_path / 'ckpt'}",
    ]  # fmt: skip
    command = agent_command(values, tiny)
    assert command[0] == "/usr/bin/env" and command[-4:] == [
        "--lr=0.004", "--warmup_iters=2", "--batch_size=8", "--weight_decay=0.05",
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    found = ExperimentAnalyzer(logs)
    found.load_all(quiet=True)
    (log,) = found.logs.values()
    assert log.status == "finished" and log.experiment_name == f"tinylm_pydoc_{run_id}"
    assert log.group == sweep_id and log.config.wandb_sweep_id == sweep_id
    assert log.config.max_learning_rate == 0.004 and log.config.warmup_iters == 2
    state = log.mirrors["wandb"]
    assert state["run_id"] == run_id and state["status"] == "finished"

    run = wr.run_record(state["sync_dir"])
    assert run["run_id"] == run_id and run["sweep_id"] == sweep_id
    assert run["project"] == "cs336-sweep"
    assert run["config"]["update"]["lr"] == 0.004  # the agent's parameters, read by wandb
    vals = [float(r["val/loss"]) for r in wr.history(state["sync_dir"]) if "val/loss" in r]
    local = [r.val_loss for r in log.metrics_history if r.val_loss is not None]
    assert vals == local and len(vals) == 3  # the metric sweep.yaml declares, every eval
    assert float(wr.summary(state["sync_dir"])["val/loss"]) == local[-1]
    assert found.sweep_rows(sweep_id)[1][0][0] == run_id  # its trial: the W&B run
