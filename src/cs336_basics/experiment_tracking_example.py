"""Usage examples (the guide's ``experiment_tracking_example.py``).

Run ``python -m cs336_basics.experiment_tracking_example [--log-dir DIR]``: it tracks one run,
then a small learning-rate sweep on a simulated loss curve, and compares them. It takes a few
seconds and needs no GPU, no data and no account.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

from cs336_basics.experiment_analysis import ExperimentAnalyzer
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker


def simulated_run(config: ExperimentConfig, log_dir: Path, iters: int = 300) -> ExperimentTracker:
    """Track a run whose loss follows a noisy power law that depends on the learning rate."""
    rng = random.Random(config.seed)
    tracker = ExperimentTracker(config, log_dir=log_dir)
    tracker.start()
    lr_max = config.max_learning_rate
    speed = min(lr_max / 1e-3, 3.0)
    unstable = lr_max > 5e-3
    for it in range(iters):
        warm = min(1.0, (it + 1) / max(1, config.warmup_iters))
        lr = lr_max * warm * (0.5 * (1 + math.cos(math.pi * it / iters)))
        lr = max(lr, config.min_learning_rate)
        loss = 1.8 + 3.7 / (1 + speed * it / 25) ** 0.7 + rng.gauss(0, 0.03)
        if unstable and it > iters // 2:
            loss = float("nan")
        tracker.log_metrics(
            iteration=it,
            train_loss=loss,
            learning_rate=lr,
            tokens_per_sec=config.batch_size * config.context_length / 0.05,
            iter_time_ms=50.0 + rng.random(),
        )
        tracker.increment_gradient_step()
        if (it + 1) % 50 == 0:
            tracker.log_eval(iteration=it, train_loss=loss, val_loss=loss + 0.08)
    tracker.finish(notes=f"simulated curve, lr={lr_max:g}")
    tracker.save()
    return tracker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", default="experiment_logs/examples", type=Path)
    args = parser.parse_args(argv)

    print("== 1. Basic tracking")
    base = ExperimentConfig(experiment_name="example_baseline", warmup_iters=20)
    tracker = simulated_run(base, args.log_dir)
    tracker.print_summary()

    print("\n== 2. A learning-rate sweep")
    for lr in (3e-4, 1e-3, 3e-3, 1e-2):
        config = ExperimentConfig(
            experiment_name=f"example_lr_{lr:.0e}", max_learning_rate=lr, warmup_iters=20
        )
        run = simulated_run(config, args.log_dir)
        print(f"  {config.experiment_name}: best val loss {run.log.best_val_loss}")

    print("\n== 3. Analysis and comparison")
    analyzer = ExperimentAnalyzer(log_dir=args.log_dir)
    analyzer.load_all()
    print(analyzer.get_comparison_table(sort_by="best_val"))
    name, value = analyzer.get_best_experiment("val_loss")
    print(
        f"\nBest experiment: {name} with val loss {value:.4f} "
        "(the diverged lr=1e-2 run is never picked)"
    )
    csv_path = analyzer.export_csv(name, args.log_dir / f"{name}_metrics.csv")
    print(f"Exported its curve to {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
