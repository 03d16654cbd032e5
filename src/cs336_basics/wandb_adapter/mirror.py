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
    settings = dict(spec["sink"])
    sink = WandbSink(
        project=settings.get("project"),
        entity=settings.get("entity"),
        mode=settings.get("mode"),
        run_id=None,  # bind() takes the recorded one (and the rows it has not received)
        tags=settings.get("tags"),
        group=settings.get("group"),
        dir=settings.get("dir"),
        init_kwargs=settings.get("init_kwargs"),
        in_process=True,
    )
    return run_mirror(sink, spec)


if __name__ == "__main__":
    raise SystemExit(main())
