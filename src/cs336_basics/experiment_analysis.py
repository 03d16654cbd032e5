"""Analysis tools (the guide's ``experiment_analysis.py``).

``ExperimentAnalyzer`` loads local runs (and W&B runs via ``load_wandb``) and compares them;
``print_experiment_summary`` prints the comparison of a log directory.
"""

from pathlib import Path

from cs336_basics.analysis.analyzer import ExperimentAnalyzer, print_experiment_summary

__all__ = ["ExperimentAnalyzer", "Path", "print_experiment_summary"]
