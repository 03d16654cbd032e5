"""The tracker's share of a training step on an accelerator (run it where there is one).

Times the example's Transformer LM (default: the CS336 size, d_model 512, 4 layers, 16 heads,
d_ff 1344, ctx 256, vocab 10k, batch 64, bf16 autocast, fused AdamW, grad clipping). Every
step logs what a real loop logs: train loss and grad norm (device tensors), lr, tokens/s,
iteration time. Modes:

- ``none``: no logging at all (the baseline);
- ``tracker``: ``log_metrics`` with the loss and grad norm as 0-d device tensors (read off
  the training thread, in batches);
- ``tracker_wandb``: the same with ``sinks=["wandb"]`` (the mirror in its own process);
- ``item``: the tracker with ``.item()`` values (a host sync every step);
- ``wandb``: ``wandb.log`` directly with ``.item()`` values (what most scripts do).

Method (see the design notes: step time drifts by several percent between blocks): every
repetition runs one block of ``--steps`` steps of each mode, in a new random order; the
figure for a mode is the median over repetitions of (mode - none of the same repetition),
with its spread. Loggers are created once, before timing; each block ends with a device sync.

    python benchmarks/bench_gpu_step.py --device cuda [--steps 100 --reps 15]
    python benchmarks/bench_gpu_step.py --device cpu --small --steps 10 --reps 7   # smoke run
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests"))
from lm_model import TransformerLM  # noqa: E402

from cs336_basics import ExperimentConfig, ExperimentTracker  # noqa: E402

MODES = ("none", "tracker", "tracker_wandb", "item", "wandb")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=100, help="steps per block")
    p.add_argument("--reps", type=int, default=15, help="repetitions (>= 7)")
    p.add_argument("--small", action="store_true", help="a tiny model (smoke test)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if "none" not in modes:
        modes.insert(0, "none")
    dev = args.device
    if args.small:
        shape = dict(vocab=256, ctx=64, d=64, layers=2, heads=4, dff=172, batch=8)
    else:
        shape = dict(vocab=10000, ctx=256, d=512, layers=4, heads=16, dff=1344, batch=64)
    model = TransformerLM(
        shape["vocab"], shape["ctx"], shape["d"], shape["layers"], shape["heads"], shape["dff"]
    ).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=dev.startswith("cuda"))
    x = torch.randint(0, shape["vocab"], (shape["batch"], shape["ctx"]), device=dev)
    y = torch.randint(0, shape["vocab"], (shape["batch"], shape["ctx"]), device=dev)
    use_bf16 = dev.startswith("cuda")
    tokens = shape["batch"] * shape["ctx"]

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(dev.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach(), grad_norm.detach()

    def sync() -> None:
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    tmp = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    if "tracker_wandb" in modes or "wandb" in modes:
        from wandb_records import offline_env

        os.environ.update(offline_env(tmp / "wandb"))
    loggers: dict[str, Any] = {}
    for mode in modes:
        if mode in ("tracker", "item", "tracker_wandb"):
            loggers[mode] = ExperimentTracker(
                ExperimentConfig(experiment_name=f"gpu_{mode}"),
                log_dir=tmp / "logs",
                sinks=["wandb"] if mode == "tracker_wandb" else [],
            ).start()
        elif mode == "wandb":
            import wandb

            loggers[mode] = wandb.init(project="bench-gpu", name="direct", reinit="create_new")
    iteration = {m: 0 for m in modes}

    def block(mode: str) -> float:
        logger = loggers.get(mode)
        sync()
        t0 = last = time.perf_counter()
        for _ in range(args.steps):
            loss, grad_norm = step()
            now = time.perf_counter()
            ms, last = (now - last) * 1000, now
            i = iteration[mode]
            iteration[mode] += 1
            if mode in ("tracker", "tracker_wandb"):
                logger.log_metrics(i, loss, 1e-3, tokens / ms * 1000, ms, grad_norm=grad_norm)
                logger.increment_gradient_step()
            elif mode == "item":
                logger.log_metrics(i, loss.item(), 1e-3, tokens / ms * 1000, ms,
                                   grad_norm=grad_norm.item())  # fmt: skip
                logger.increment_gradient_step()
            elif mode == "wandb":
                logger.log({"train/loss": loss.item(), "train/lr": 1e-3,
                            "perf/tokens_per_sec": tokens / ms * 1000, "perf/iter_time_ms": ms,
                            "train/grad_norm": grad_norm.item()})  # fmt: skip
        sync()
        return (time.perf_counter() - t0) / args.steps * 1000

    for _ in range(20):
        step()  # warm-up (and the mirror's wandb.init, off the clock)
    time.sleep(3.0)
    results: dict[str, list[float]] = {m: [] for m in modes}
    rng = random.Random(args.seed)
    for rep in range(args.reps):
        order = modes[:]
        rng.shuffle(order)
        for mode in order:
            results[mode].append(block(mode))
        print(f"rep {rep + 1}/{args.reps}", file=sys.stderr, flush=True)
    for logger in loggers.values():
        logger.finish()
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else dev
    print(f"{name}: {args.reps} repetitions x {args.steps} steps per mode, shape {shape}")
    base = results["none"]
    print(f"  {'none':14} {statistics.median(base):8.3f} ms/step (median block)")
    for mode in modes[1:]:
        rel = [(m - b) / b * 100 for m, b in zip(results[mode], base, strict=True)]
        q = statistics.quantiles(rel, n=4) if len(rel) >= 4 else [min(rel), 0, max(rel)]
        print(
            f"  {mode:14} {statistics.median(results[mode]):8.3f} ms/step  paired median "
            f"{statistics.median(rel):+6.2f}%  (quartiles {q[0]:+.2f}% .. {q[2]:+.2f}%)"
        )
    print("  target: tracker and tracker_wandb within 0.5% of none")


if __name__ == "__main__":
    main()
