"""``python -m cs336_basics`` runs the ``cs336-exp`` command line."""

from cs336_basics.tracking.cli import main

raise SystemExit(main())
