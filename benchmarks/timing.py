"""Per-call timing shared by the benchmarks."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def per_call(fn: Callable[[int], object], n: int) -> tuple[float, float, float]:
    """(median us, p99 us, total s) of ``n`` calls of ``fn(i)``, each call timed alone."""
    clock = time.perf_counter_ns
    samples = [0] * n
    gc.collect()
    t0 = time.perf_counter()
    for i in range(n):
        a = clock()
        fn(i)
        samples[i] = clock() - a
    total = time.perf_counter() - t0
    samples.sort()
    return samples[n // 2] / 1000, samples[int(n * 0.99)] / 1000, total
