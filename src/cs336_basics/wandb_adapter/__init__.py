"""The Weights & Biases adapter: mirror a run to W&B, push a local run, pull W&B runs back.

It depends one way on the core (:mod:`cs336_basics.tracking`); the core never imports it
(the tracker finds ``"wandb"`` through the sink registry in ``tracking.sinks``).

- ``client``: importing wandb, W&B run ids;
- ``keys``: the one table of local fields and W&B keys (push uses it, pull inverts it);
- ``sink``: ``WandbSink``, the live mirror;
- ``push``: upload an existing local run;
- ``pull``: W&B runs back into ``ExperimentLog``.

Named ``wandb_adapter`` so that it can never shadow the ``wandb`` client in a user's code.
"""
