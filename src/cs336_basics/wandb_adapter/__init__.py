"""The Weights & Biases adapter: mirror a run to W&B, push a local run, pull W&B runs back.

It depends one way on the core, the store and the runtime; they never import it (the
tracker finds ``"wandb"`` through the sink registry, the analyzer ``pull_runs`` through
``core.plugins``).

- ``client``: importing wandb, W&B run ids, differences between wandb releases;
- ``keys``: the one table of local fields and W&B keys, both directions (no GraphQL);
- ``runs``: a W&B run's rows, config and summary as an ``ExperimentLog`` (no GraphQL);
- ``sink``: ``WandbSink``, the live mirror;
- ``mirror``: the mirror process's ``build_sink``;
- ``push``: upload an existing local run;
- ``pull``: W&B runs back through the public API (GraphQL);
- ``wandb_file``, ``importer``: offline ``.wandb`` files read with wandb's own reader.

Named ``wandb_adapter`` so that it can never shadow the ``wandb`` client in a user's code.
"""
