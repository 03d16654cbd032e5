"""The W&B mirror process: ``python -m cs336_basics.wandb_adapter.mirror SPEC``.

Started by the tracker (see :mod:`cs336_basics.tracking.mirror_process`); ``SPEC`` is the JSON
the tracker wrote: the run's files, the training process's pid and the ``WandbSink``
settings. Everything wandb does happens here, in this process.
"""

from __future__ import annotations

import json
import sys

from ..tracking.mirror_process import run_mirror
from .sink import WandbSink


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    sink = WandbSink.from_process_spec(dict(spec["sink"]))
    return run_mirror(sink, spec)


if __name__ == "__main__":
    raise SystemExit(main())
