import subprocess
import sys

CODE = """
import sys
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker
from cs336_basics.experiment_analysis import ExperimentAnalyzer
import cs336_basics.cli
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


def test_a_wandb_that_breaks_on_import_gives_the_friendly_error(tmp_path, monkeypatch):
    # wandb 0.16 under numpy 2 raises AttributeError (np.float_) on import.
    import pytest

    from cs336_basics import SinkUnavailableError, WandbSink
    from cs336_basics.wandb_adapter.client import import_wandb

    broken = tmp_path / "wandb"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        "raise AttributeError('`np.float_` was removed in the NumPy 2.0 release')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    with pytest.raises(SinkUnavailableError, match="failed to import.*np.float_") as caught:
        import_wandb()
    assert isinstance(caught.value.__cause__, AttributeError)
    with pytest.raises(SinkUnavailableError, match="pip install 'cs336-basics\\[wandb\\]'"):
        WandbSink(in_process=True)


def test_sweeps_import_optuna_only_when_used_and_say_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['optuna'] = None\n"  # as if not installed
        "from cs336_basics import run_trial, open_study, TrialReporter\n"
        "try:\n"
        "    open_study('s', log_dir=sys.argv[1])\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == (
        "sweeps need optuna: pip install 'cs336-basics[sweep]' (or pip install optuna)"
    )
    lazy = "import sys, cs336_basics.sweep, cs336_basics; cs336_basics.run_trial; "
    lazy += "print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
