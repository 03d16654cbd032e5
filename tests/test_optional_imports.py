import subprocess
import sys

CODE = """
import sys
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker
from cs336_basics.experiment_analysis import ExperimentAnalyzer
import cs336_basics.tracking.cli
t = ExperimentTracker(ExperimentConfig(experiment_name="x"), log_dir=sys.argv[1])
t.log_metrics(iteration=0, train_loss=1.0)
t.finish()
a = ExperimentAnalyzer(sys.argv[1]); a.load_all(); a.get_comparison_table()
print(sorted(m for m in ("torch", "wandb", "matplotlib", "numpy") if m in sys.modules))
"""


def test_core_imports_no_optional_dependency(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
