"""Run a script written for W&B with the drop-in, without editing it.

    python -m cs336_basics.wandb_compat [--log-dir DIR] [--mode MODE] train.py [ARGS...]
    python -m cs336_basics.wandb_compat [--log-dir DIR] [--mode MODE] -m package.module [ARGS...]

``import wandb`` in the script (and in the frameworks it uses: the Hugging Face ``Trainer``,
Lightning's ``WandbLogger``, accelerate) then gives :mod:`cs336_basics.wandb_compat`, in this
process only: the W&B mirror, when there is one, runs in its own process with the real
client. Where the real client is not installed, frameworks that look for wandb's package
metadata (Lightning, accelerate) are told the drop-in is there, so they log locally.

``--log-dir`` sets where the runs' local files go (``CS336_LOG_DIR``; default
``experiment_logs``); ``--mode`` sets ``WANDB_MODE`` (online, offline, disabled).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.metadata
import os
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core import env
from ..wandb_adapter.client import real_wandb_installed


class _DropInDistribution(importlib.metadata.Distribution):
    """Package metadata named ``wandb`` for the drop-in (only where wandb is not installed)."""

    def read_text(self, filename: str) -> str | None:
        if filename == "METADATA":
            from . import __version__

            return (
                "Metadata-Version: 2.1\nName: wandb\n"
                f"Version: {__version__}\n"
                "Summary: cs336_basics.wandb_compat, the local drop-in for wandb\n"
            )
        return None

    def locate_file(self, path: Any) -> Path:
        return Path(__file__).resolve().parent / str(path)


class _DropInFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, *args: Any, **kwargs: Any) -> None:
        return None  # modules are found as usual; only the metadata is added

    def find_distributions(
        self, context: Any = importlib.metadata.DistributionFinder.Context()
    ) -> Iterator[importlib.metadata.Distribution]:
        name = getattr(context, "name", None)
        if name is None or name.lower().replace("_", "-") == "wandb":
            yield _DropInDistribution()


def alias() -> None:
    """Make ``import wandb`` give the drop-in in this process."""
    import cs336_basics.wandb_compat as dropin

    sys.modules["wandb"] = dropin
    if not real_wandb_installed() and not any(isinstance(f, _DropInFinder) for f in sys.meta_path):
        sys.meta_path.append(_DropInFinder())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cs336_basics.wandb_compat",
        description="Run a script written for W&B, unchanged, with `import wandb` giving the "
        "local drop-in (cs336_basics.wandb_compat) in this process only.",
    )
    parser.add_argument(
        "--log-dir",
        help="where the runs' local files go (sets CS336_LOG_DIR; default: experiment_logs)",
    )
    parser.add_argument(
        "--mode",
        choices=["online", "offline", "disabled"],
        help="W&B mirror mode (sets WANDB_MODE; default: WANDB_MODE, else online)",
    )
    parser.add_argument("-m", dest="module", help="run this module as a script (as python -m does)")
    parser.add_argument("script", nargs="?", help="the script to run (omit with -m)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.module and args.script:
        args.args = [args.script, *args.args]
        args.script = None
    if not args.module and not args.script:
        parser.error("give the script to run (train.py ...) or -m module")
    if args.log_dir:
        os.environ[env.LOG_DIR] = args.log_dir
    if args.mode:
        os.environ[env.WANDB_MODE] = args.mode
    alias()
    if args.module:
        sys.argv = [args.module, *args.args]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
        return 0
    script = Path(args.script)
    if not script.is_file():
        parser.error(f"script {args.script}: no such file")
    sys.argv = [str(script), *args.args]
    sys.path[0] = str(script.resolve().parent)  # as `python script.py` sets it
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
