"""``store/codec``: the document's columns keep each value's type."""

from __future__ import annotations

from cs336_basics import ExperimentConfig
from cs336_basics.core.log import ExperimentLog
from cs336_basics.core.row import MetricsSnapshot
from cs336_basics.store.codec import decode_log, encode_log


def test_ints_and_floats_mixed_in_a_column_keep_their_types(tmp_path):
    rows = [
        MetricsSnapshot(
            i, i + 1, 0 if i == 0 else i * 0.5, extra={"tokens": 2**60 + 1 if i else 0.5}
        )
        for i in range(5000)
    ]
    log = ExperimentLog(config=ExperimentConfig(), metrics_history=rows)
    loaded, _ = decode_log(encode_log(log, 1), "mem.json")
    assert type(loaded.metrics_history[0].wallclock_time) is int
    assert loaded.metrics_history[7].extra["tokens"] == 2**60 + 1
    assert loaded.metrics_history[0].extra["tokens"] == 0.5
