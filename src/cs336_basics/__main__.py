"""``python -m cs336_basics``: the ``cs336-exp`` command line."""

from cs336_basics.cli import main

raise SystemExit(main())
