"""A hyperparameter sweep of the training example on Optuna: every trial one tracked run.

    python examples/sweep.py --study lr_sweep --trials 20 --max-iters 400
    python examples/sweep.py --study lr_sweep --trials 20 --max-iters 400  # more workers: the
        # same command in other shells, or on other machines with --storage URL (below)
    cs336-exp sweep lr_sweep                                # the trials, best first
    cs336-exp plot --group lr_sweep --vs max_learning_rate -o lr_sweep.png

Each trial trains examples/training_together.py in this process with hyperparameters drawn
from SEARCH_SPACE (below: the one place they are defined; examples/sweep.yaml declares the
same space for W&B sweep agents). The trial's run is named ``<study>_trial<NNN>``, grouped
by the study's name, with ``optuna_study`` and ``optuna_trial`` in its config. The
validation loss goes to Optuna at every eval; the pruner (the median pruner unless
``--pruner none``) stops a trial whose loss is worse than the median of the completed
trials' at that eval, and its run is finished and marked pruned (``cs336-exp list`` and
``cs336-exp sweep`` show status ``pruned``). The objective is the trial's best val loss.

Storage: by default Optuna's journal file in the log directory
(``<log-dir>/<study>.optuna.log``), which any number of workers on this machine (or on a
shared file system) share. For many machines, an RDB: ``--storage
postgresql://user:pass@host/db`` (or ``mysql://...``; ``sqlite:///sweep.db`` on one
machine); start the same command on every machine. Each worker asks the storage for its next
trial, so no trial runs twice; the workers stop once the study has ``--trials`` trials (all
workers together; one more per worker at most when they finish at the same moment).

Every option that is not the sweep's own (``--help``) is the training example's (``python
examples/training_together.py --help``), applied to every trial: ``--max-iters``,
``--eval-interval``, ``--sink wandb`` (every trial mirrored to W&B, grouped by the study),
``--log-dir``, ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import training_together as training  # noqa: E402

from cs336_basics import ExperimentAnalyzer  # noqa: E402
from cs336_basics.sweep import import_optuna, open_study, run_trial  # noqa: E402

#: The search space: option of training_together.py -> how Optuna draws it (suggest_float
#: with ``low``/``high``/``log``, suggest_int with ``low``/``high``, or suggest_categorical
#: with ``choices``). examples/sweep.yaml declares the same for W&B (a test checks).
SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
    "warmup_iters": {"type": "int", "low": 0, "high": 100},
    "batch_size": {"type": "categorical", "choices": [8, 16, 32]},
    "weight_decay": {"type": "float", "low": 0.0, "high": 0.3},
}


def suggest(trial: Any, space: dict[str, dict[str, Any]] = SEARCH_SPACE) -> dict[str, Any]:
    """The trial's hyperparameters, drawn from ``space``."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        kind = spec["type"]
        if kind == "float":
            params[name] = trial.suggest_float(
                name, spec["low"], spec["high"], log=spec.get("log", False)
            )
        elif kind == "int":
            params[name] = trial.suggest_int(name, spec["low"], spec["high"])
        elif kind == "categorical":
            params[name] = trial.suggest_categorical(name, spec["choices"])
        else:
            raise ValueError(f"SEARCH_SPACE[{name!r}]: unknown type {kind!r}")
    return params


def wandb_parameters(space: dict[str, dict[str, Any]] = SEARCH_SPACE) -> dict[str, Any]:
    """``space`` as a W&B sweep's ``parameters`` (what examples/sweep.yaml holds)."""
    out: dict[str, Any] = {}
    for name, spec in space.items():
        kind = spec["type"]
        if kind == "categorical":
            out[name] = {"values": list(spec["choices"])}
        elif kind == "int":
            out[name] = {"distribution": "int_uniform", "min": spec["low"], "max": spec["high"]}
        else:
            dist = "log_uniform_values" if spec.get("log") else "uniform"
            out[name] = {"distribution": dist, "min": spec["low"], "max": spec["high"]}
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Sweep the training example's hyperparameters with Optuna: each trial one "
        "tracked run, grouped by the study.",
        epilog="Every other option is the training example's (python "
        "examples/training_together.py --help), applied to every trial; SEARCH_SPACE in this "
        "file sets " + ", ".join(f"--{name}" for name in SEARCH_SPACE) + ".",
        formatter_class=training._HelpFormatter,
        allow_abbrev=False,  # an abbreviation must never swallow a training option
    )
    p.add_argument("--study", default="tinylm_sweep", help="the study's name (the runs' group)")
    p.add_argument(
        "--trials",
        type=int,
        default=20,
        help="stop once the study has this many trials, all workers together",
    )
    p.add_argument(
        "--storage",
        help="an RDB URL shared by many machines (postgresql://..., mysql://..., "
        "sqlite:///file.db) or a journal file's path (default: LOG_DIR/STUDY.optuna.log)",
    )
    p.add_argument(
        "--pruner",
        choices=["median", "none"],
        default="median",
        help="median: stop a trial whose val loss at an eval is worse than the median of "
        "the completed trials' there; none: every trial runs to the end",
    )
    p.add_argument(
        "--startup-trials",
        type=int,
        default=3,
        help="trials completed before the median pruner prunes any",
    )
    p.add_argument(
        "--sampler-seed",
        type=int,
        help="seed of Optuna's TPE sampler (default: random; give each worker its own)",
    )
    return p


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The sweep's options, and the training options every trial gets (checked here)."""
    parser = build_parser()
    args, base = parser.parse_known_args(argv)
    if args.trials < 1:
        parser.error(f"--trials: expected a positive integer, got {args.trials}")
    if args.startup_trials < 0:
        parser.error(f"--startup-trials: expected 0 or more, got {args.startup_trials}")
    training.parse_args(base)  # a wrong training option fails now, not in the first trial
    return args, base


def trial_args(base: list[str], study: str, number: int, params: dict[str, Any]) -> list[str]:
    """The training command line of one trial: the base options, then the trial's own (the
    hyperparameters as a W&B agent passes them: ``--lr=0.001``)."""
    return [
        *base,
        f"--wandb-run-name={study}_trial{number:03d}",
        "--quiet",
        "--no-plot",
        *[f"--{name}={value}" for name, value in params.items()],
    ]


def main(argv: list[str] | None = None) -> Any:
    args, base = parse(argv)
    optuna = import_optuna()
    log_dir = training.parse_args(base).log_dir
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=args.startup_trials)
        if args.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    study = open_study(
        args.study,
        log_dir=log_dir,
        storage=args.storage,
        pruner=pruner,
        sampler=optuna.samplers.TPESampler(seed=args.sampler_seed),
    )

    def objective(trial: Any) -> float:
        argv = trial_args(base, args.study, trial.number, suggest(trial))
        trial_args_ns = training.parse_args(argv)
        return run_trial(trial, lambda report: training.train(trial_args_ns, report=report))

    if len(study.trials) < args.trials:
        done = optuna.study.MaxTrialsCallback(args.trials, states=None)
        study.optimize(objective, callbacks=[done])
    analyzer = ExperimentAnalyzer(log_dir)
    analyzer.load_all(quiet=True)
    print(analyzer.sweep_table(args.study))
    return study


if __name__ == "__main__":
    main()
