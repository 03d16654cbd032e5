"""A sink that runs in its own process and hangs in its first ``emit`` (as a client stuck on
a dead connection does), for tests of how a mirror process is stopped."""

from __future__ import annotations

import time
from typing import Any

from cs336_basics import Sink


class StuckSink(Sink):
    name = "stuck"
    process_module = "stuck_sink"

    def __init__(self) -> None:
        self.status = "pending"

    def start(self, log: Any) -> None:
        self.status = "running"

    def emit(self, row: Any) -> None:
        self.status = "stuck"
        if self.on_state is not None:
            self.on_state(self.state())
        while True:  # never returns, as a call blocked on a dead service
            time.sleep(1.0)

    def state(self) -> dict[str, Any]:
        return {"status": self.status}


def build_sink(settings: dict[str, Any]) -> StuckSink:
    return StuckSink()
