"""Hypothesis round trip: log -> JSON -> load -> CSV keeps every value."""

import csv
import math

from helpers import GUIDE_COLUMNS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs336_basics.experiment_analysis import ExperimentAnalyzer
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker, load_experiment_log

values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 1e-300, 0.0, -0.0]),
    st.integers(min_value=-(2**53), max_value=2**53),
)
rows = st.lists(st.tuples(values, values, values, values, st.booleans()), min_size=1, max_size=20)


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=rows, extra=st.floats(allow_nan=True))
def test_log_json_load_csv_round_trip(tmp_path_factory, data, extra):
    log_dir = tmp_path_factory.mktemp("rt")
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="rt", knob=extra), log_dir=log_dir)
    for i, (loss, lr, tps, ms, do_eval) in enumerate(data):
        tracker.log_metrics(
            iteration=i,
            train_loss=loss,
            learning_rate=lr,
            tokens_per_sec=tps,
            iter_time_ms=ms,
            grad_norm=1.5,
        )
        tracker.increment_gradient_step()
        if do_eval:
            tracker.log_eval(iteration=i, val_loss=loss)
    tracker.finish()
    tracker.save()
    original = tracker.log
    loaded = load_experiment_log(tracker.path)
    assert len(loaded.metrics_history) == len(original.metrics_history)
    for a, b in zip(original.metrics_history, loaded.metrics_history, strict=True):
        for name in GUIDE_COLUMNS:
            assert same(getattr(a, name), getattr(b, name)), name
        assert b.extra == {"grad_norm": 1.5}
    for name in ("best_train_loss", "best_val_loss", "final_train_loss", "final_val_loss"):
        assert same(getattr(original, name), getattr(loaded, name)), name
    assert same(loaded.config.knob, extra)

    analyzer = ExperimentAnalyzer(log_dir)
    analyzer.load_all()
    out = analyzer.export_csv("rt", log_dir / "rt.csv")
    with open(out) as handle:
        table = list(csv.DictReader(handle))
    for row, snap in zip(table, loaded.metrics_history, strict=True):
        for name, text in row.items():
            expected = getattr(snap, name)
            got = None if text == "" else float(text)
            assert same(got, None if expected is None else float(expected)), (name, text)
