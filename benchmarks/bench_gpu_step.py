"""The tracker's share of a training step on an accelerator (run it where there is one).

Times the example's Transformer LM (default: the CS336 size of the design notes, d_model 512,
4 layers, 16 heads, d_ff 1344, ctx 256, vocab 10k, batch 64, bf16 autocast, fused AdamW)
for ``--steps`` steps in three modes, each repeated, medians reported, same process:

- ``none``: no logging at all (the baseline);
- ``tracker``: ``log_metrics`` every step with the loss as a 0-d device tensor (the tracker
  converts a batch of them at most once a second, so no per-step host sync);
- ``item``: ``log_metrics`` every step with ``loss.item()`` (a host sync each step).

    python benchmarks/bench_gpu_step.py --device cuda [--steps 300 --repeats 3]
    python benchmarks/bench_gpu_step.py --device cpu --small      # a smoke run anywhere
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from lm_model import TransformerLM  # noqa: E402

from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--small", action="store_true", help="a tiny model (smoke test)")
    args = p.parse_args()
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

    def step() -> torch.Tensor:
        with torch.autocast(dev.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def sync() -> None:
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    def run(mode: str, log_dir: str) -> float:
        tracker = None
        if mode != "none":
            tracker = ExperimentTracker(
                ExperimentConfig(experiment_name=f"gpu_{mode}"), log_dir=log_dir
            )
            tracker.start()  # start-up is not part of a step
        sync()
        t0 = time.perf_counter()
        for i in range(args.steps):
            loss = step()
            if tracker is not None:
                value = loss.item() if mode == "item" else loss
                tracker.log_metrics(iteration=i, train_loss=value, learning_rate=1e-3)
                tracker.increment_gradient_step()
        if tracker is not None:
            tracker.finish()  # includes converting what is still pending
        sync()
        return (time.perf_counter() - t0) / args.steps * 1000

    for _ in range(10):
        step()  # warm-up
    results: dict[str, list[float]] = {"none": [], "tracker": [], "item": []}
    with tempfile.TemporaryDirectory() as log_dir:
        for _ in range(args.repeats):
            for mode in results:  # interleaved, so drift hits every mode alike
                results[mode].append(run(mode, log_dir))
    base = statistics.median(results["none"])
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else dev
    print(f"{name}: {args.steps} steps x {args.repeats}, shape {shape}")
    for mode, times in results.items():
        med = statistics.median(times)
        print(f"  {mode:8} {med:8.3f} ms/step  overhead {100 * (med - base) / base:+6.2f}%")
    print("  target: the tracker's share of a GPU step < 0.5%")


if __name__ == "__main__":
    main()
