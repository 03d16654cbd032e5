"""Runs of one group (the seeds of one setting, typically) as one curve: the mean across the
runs, with a band (their minimum and maximum, or the mean plus and minus their standard
deviation). The page (``cs336-exp serve``), ``cs336-exp plot --by-group`` and the HTML
report all draw groups with :func:`band`.

How the band is made: the x-range the group's runs cover is cut into ``bins`` equal bins;
each run's finite values in a bin are averaged (one value per run and bin: runs that log at
the same steps, as seeds do, give exactly their own values when there are more bins than
steps); then, per bin, the mean, minimum, maximum and (population) standard deviation over
the runs that have a value there, and how many do (``n``: fewer where a run stopped
early). The x of a bin is the mean x of the values in it. Pure Python over the runs'
columns: each run is cut with ``bisect`` and summed in C, O(bins log rows + rows).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..core.log import ExperimentLog

#: The bands a figure can draw around a group's mean.
BANDS = ("minmax", "std")
K = TypeVar("K")


@dataclass
class Band:
    """A group's mean curve and band, bin by bin (see the module docstring)."""

    x: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]
    std: list[float]
    n: list[int]

    def edges(self, kind: str = "minmax") -> tuple[list[float], list[float]]:
        """The band's lower and upper edge: min and max, or mean -/+ std."""
        if kind == "std":
            return (
                [m - s for m, s in zip(self.mean, self.std, strict=True)],
                [m + s for m, s in zip(self.mean, self.std, strict=True)],
            )
        if kind != "minmax":
            raise ValueError(f"band: expected one of {', '.join(BANDS)}, got {kind!r}")
        return self.low, self.high


def groups_of(logs: Mapping[K, ExperimentLog]) -> dict[str, list[K]]:
    """The runs of each group (by key, in the given order); runs with no group are left out."""
    found: dict[str, list[K]] = {}
    for key, log in logs.items():
        if log.group:
            found.setdefault(log.group, []).append(key)
    return found


def band(curves: Iterable[tuple[Sequence[float], Sequence[float]]], bins: int) -> Band | None:
    """The mean and band of curves given as (xs ascending, finite ys); None without points."""
    runs = [(xs, ys) for xs, ys in curves if len(xs)]
    if not runs:
        return None
    bins = max(1, int(bins))
    x0 = min(xs[0] for xs, _ in runs)
    x1 = max(xs[-1] for xs, _ in runs)
    if x1 <= x0:
        bins = 1
    edges = [x0 + (x1 - x0) * k / bins for k in range(1, bins)]
    per_bin: list[list[tuple[float, float]]] = [[] for _ in range(bins)]  # (x, y) per run
    for xs, ys in runs:
        cuts = [0, *(bisect_left(xs, e) for e in edges), len(xs)]
        for b in range(bins):
            lo, hi = cuts[b], cuts[b + 1]
            if hi > lo:
                count = hi - lo
                per_bin[b].append((sum(xs[lo:hi]) / count, sum(ys[lo:hi]) / count))
    out = Band([], [], [], [], [], [])
    for values in per_bin:
        if not values:
            continue
        count = len(values)
        ys = [y for _, y in values]
        mean = sum(ys) / count
        out.x.append(sum(x for x, _ in values) / count)
        out.mean.append(mean)
        out.low.append(min(ys))
        out.high.append(max(ys))
        out.std.append(math.sqrt(max(0.0, sum((y - mean) ** 2 for y in ys) / count)))
        out.n.append(count)
    return out
