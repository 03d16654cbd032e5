"""The store: a run's files, their formats, and the one loader.

- ``layout``: every file of a run directory, named in one table (``RunFiles``).
- ``codec``: the document's format (and the JSON value rules the journal shares).
- ``journal``: the journal's format, its replay, and ``JournalFollower`` (reading a live
  journal across rotations).
- ``cache``: the columnar cache beside a document (``.RUN.columns``).
- ``fileio``: atomic writes, regular-file reads, small JSON state files.
- ``document``: writing and reading a document (with its cache).
- ``lock``: ``RunLock`` (one writer per run) and whether a writer still runs.
- ``load``: ``load_run``, the one loader, and where in the live journal it stopped.
"""
