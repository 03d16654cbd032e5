"""Child process for the crash tests: trains a fake loop until it is killed."""

from __future__ import annotations

import sys
import time

from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker

mode, log_dir = sys.argv[1], sys.argv[2]
tracker = ExperimentTracker(ExperimentConfig(experiment_name="crashy"), log_dir=log_dir)
tracker.start()
print(f"PATH {tracker.path}", flush=True)
if mode == "train":
    i = 0
    while True:
        tracker.log_metrics(
            iteration=i,
            train_loss=5.0 / (1 + i),
            learning_rate=1e-3,
            tokens_per_sec=1.0,
            iter_time_ms=1.0,
        )
        tracker.increment_gradient_step()
        if (i + 1) % 200 == 0:
            tracker.log_eval(iteration=i, val_loss=5.0 / (1 + i))
        if i % 50 == 0:
            print(f"ITER {i}", flush=True)
        i += 1
        time.sleep(0.0005)
elif mode == "save":
    for i in range(20_000):
        tracker.log_metrics(iteration=i, train_loss=1.0, learning_rate=1e-3)
    tracker.save()
    print("SAVING", flush=True)
    while True:
        tracker.log_metrics(iteration=20_000, train_loss=1.0)  # same row re-logged: rollback
        tracker.save()
elif mode == "bgsave":
    # Saves in the background all the time, each widened by a delay per chunk of rows, so a
    # kill at a random moment falls inside a document write most of the time.
    import cs336_basics.store.codec as codec

    real_encode = codec.encode_chunk

    def slow_encode(chunk, pause=None):
        time.sleep(0.2)
        return real_encode(chunk, pause)

    codec.encode_chunk = slow_encode
    i = 0
    while True:
        tracker.log_metrics(iteration=i, train_loss=5.0 / (1 + i), learning_rate=1e-3)
        tracker.increment_gradient_step()
        if i % 300 == 299:
            tracker.log_eval(iteration=i, val_loss=1.0)
        if i % 250 == 249:
            tracker.flush()
            print(f"FLUSHED {i}", flush=True)
        if i % 1000 == 999:
            tracker.save()
            print(f"SAVE {i}", flush=True)
        i += 1
        if i % 20 == 0:
            time.sleep(0.001)
