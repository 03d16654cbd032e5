"""ExperimentConfig refuses what it could not save and load back; derived run facts.

Extra hyperparameters round-trip (to_dict/from_dict and through the JSON document) for any
JSON-like values and any names that are not the class's own.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs336_basics import ExperimentLog, MetricsSnapshot
from cs336_basics.experiment_log import ExperimentConfig, load_experiment_log
from cs336_basics.store.codec import decode_log, encode_log

NAMED = {name for name in ExperimentConfig().to_dict()} | {"extra"}


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda: ExperimentConfig(extra={"extra": 1}), ValueError, r"'extra'.*rename"),
        (lambda: ExperimentConfig.from_dict({"extra": 5}), ValueError, r"'extra'.*rename"),
        (lambda: ExperimentConfig.from_dict({"extra": "x"}), ValueError, r"'extra'.*rename"),
        (
            lambda: ExperimentConfig(extra={"d_model": 1024}),
            ValueError,
            r"'d_model' is a named field.*d_model=1024",
        ),
        (
            lambda: ExperimentConfig(d_model=256, extra={"d_model": 1024}),
            ValueError,
            r"'d_model' is a named field",
        ),
        (
            lambda: ExperimentConfig(extra={"experiment_name": "x"}),
            ValueError,
            r"'experiment_name' is a named field",
        ),
        (lambda: ExperimentConfig(extra={1: "a", "ok": 2}), TypeError, r"must be strings.*1"),
        (lambda: ExperimentConfig(extra={("a",): 1}), TypeError, r"\('a',\)"),
        (lambda: ExperimentConfig(extra=[("norm", "post")]), TypeError, r"extra: expected a dict"),
        (lambda: ExperimentConfig(norm="a", extra={"norm": "b"}), ValueError, r"'norm'.*twice"),
    ],
    ids=[
        "extra-in-extra",
        "from-dict-extra-number",
        "from-dict-extra-string",
        "named-in-extra",
        "named-twice",
        "name-in-extra",
        "int-key",
        "tuple-key",
        "extra-not-dict",
        "kwarg-and-extra",
    ],
)
def test_config_refuses_what_it_could_not_round_trip(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def test_extra_keyword_and_extra_dict_still_merge():
    config = ExperimentConfig(norm="post", extra={"ffn_type": "silu"})
    assert config.extra == {"ffn_type": "silu", "norm": "post"}
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    nested = ExperimentConfig.from_dict({"d_model": 64, "extra": {"norm": "pre"}})
    assert nested.d_model == 64 and nested.norm == "pre"  # a nested object is still read


hyper_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda name: name not in NAMED)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=True, allow_infinity=True),
    # The strings "NaN", "Infinity" and "-Infinity" are how the document spells those
    # floats, so such a string loads back as the float (a limit of the format).
    st.text(max_size=20).filter(lambda text: text not in ("NaN", "Infinity", "-Infinity")),
)
hyper_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
extras = st.dictionaries(hyper_names, hyper_values, max_size=6)


def same(a, b) -> bool:
    """Equality that takes NaN == NaN (inside lists and dicts too); True is not 1."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=150, deadline=None)
@given(extra=extras, lr=st.floats(min_value=1e-6, max_value=1.0))
def test_extra_hyperparameters_round_trip_through_dicts(extra, lr):
    config = ExperimentConfig(experiment_name="rt", max_learning_rate=lr, extra=extra)
    again = ExperimentConfig.from_dict(config.to_dict())
    assert same(again.extra, config.extra) and again.max_learning_rate == lr
    assert same(ExperimentConfig(**config.to_dict()).to_dict(), config.to_dict())


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(extra=extras)
def test_extra_hyperparameters_round_trip_through_the_document(tmp_path_factory, extra):
    config = ExperimentConfig(experiment_name="doc", extra=extra)
    log = ExperimentLog(config=config, run_id="r", status="finished")
    log.metrics_history.append(MetricsSnapshot(0, 1, 0.0, 2.5))
    data = encode_log(log, 1)
    json.loads(data)  # strict JSON whatever the values
    loaded, _ = decode_log(data, "mem.json")
    assert same(loaded.config.to_dict(), config.to_dict())
    path = tmp_path_factory.mktemp("doc") / "run.json"
    path.write_bytes(data)
    assert same(load_experiment_log(path).config.extra, config.extra)


# --------------------------------------------------------------------------- derived facts


def _log(losses: list[float], status: str = "finished") -> ExperimentLog:
    log = ExperimentLog(config=ExperimentConfig(), status=status)
    for i, loss in enumerate(losses):
        log.metrics_history.append(MetricsSnapshot(i, 2 * i + 1, float(i), loss))
    return log


@pytest.mark.parametrize(
    ("losses", "status", "shown"),
    [
        ([3.0, 2.0], "finished", "finished"),
        ([3.0, 2.0], "unfinished", "unfinished"),
        ([3.0, math.nan], "finished", "diverged"),
        ([3.0, math.inf], "running", "diverged"),
        ([], "running", "running"),
    ],
)
def test_display_status(losses, status, shown):
    assert _log(losses, status).display_status == shown


def test_last_iteration_and_step():
    log = _log([3.0, 2.0, 1.0])
    assert (log.last_iteration, log.last_gradient_step) == (2, 5)
    assert (_log([]).last_iteration, _log([]).last_gradient_step) == (None, None)
