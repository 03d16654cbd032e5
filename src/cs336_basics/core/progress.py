"""A dependency-free progress line on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(
    items: Iterable[T], total: int | None, label: str, enabled: bool | None = None
) -> Iterator[T]:
    """Yield ``items``, redrawing ``label i/total`` at most 10 times a second."""
    stream = sys.stderr
    show = stream.isatty() if enabled is None else enabled
    if not show:
        yield from items
        return
    last = 0.0
    count = 0
    for count, item in enumerate(items, start=1):
        now = time.monotonic()
        if now - last > 0.1:
            last = now
            stream.write(f"\r{label} {count}/{total if total is not None else '?'}")
            stream.flush()
        yield item
    stream.write(f"\r{label} {count}/{total if total is not None else count} done\n")
    stream.flush()
