"""The runtime: what runs beside a training loop.

- ``tracker``: ``ExperimentTracker``, the guide's API and the wiring of the parts below.
- ``deferred``: rows holding accelerator tensors, converted in batches off the hot path.
- ``journal_writer``: the thread that appends the journal.
- ``saver``: ``RunSaves`` (journal rotation, background and final saves) and its writer
  thread.
- ``sinks``: the sink base class, the in-process dispatcher thread, the registry.
- ``mirrors``: sinks in processes of their own, as the training process sees them.
- ``mirror_child``: the mirror process itself (follows the journal, feeds the sink).
- ``system_metrics``: the sampler thread (GPUs through NVML, process and host through
  psutil) and other ranks' samples files.
- ``alerts``: ``AlertWatch``, the alert detector fed by the journal thread, and the
  script's ``on_alert`` callback on a thread of its own.
- ``provenance``: where a run came from (git state and diff, command line, versions,
  host, GPUs, data fingerprints), collected in a thread of its own at start.
- ``manage``: changing a run nobody writes any more (tags, group, notes, name), the trash
  (delete, restore) and purging, each under the run's lock.
"""
