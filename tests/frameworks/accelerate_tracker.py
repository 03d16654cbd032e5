"""A tiny accelerate run with ``Accelerator(log_with="wandb")``, CPU, 30 steps, as users write
them (``accelerator.log(..., step=i)``). Run through ``python -m cs336_basics.wandb_compat``
by tests/test_frameworks.py: ``python accelerate_tracker.py LOGGED_JSON`` receives what was
passed to ``accelerator.log``."""

import json
import sys

import torch
from accelerate import Accelerator

torch.manual_seed(0)
accelerator = Accelerator(log_with="wandb", cpu=True)
config = {"lr": 1e-2, "steps": 30, "batch_size": 8}
accelerator.init_trackers(
    "accelerate-tiny", config=config, init_kwargs={"wandb": {"name": "accelerate-tiny"}}
)
model = torch.nn.Linear(8, 1)
optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
model, optimizer = accelerator.prepare(model, optimizer)
logged = []
for i in range(config["steps"]):
    x = torch.randn(config["batch_size"], 8)
    loss = torch.nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    values = {"train_loss": loss.item(), "lr": optimizer.param_groups[0]["lr"]}
    accelerator.log(values, step=i)
    logged.append({"step": i, **values})
    if i % 10 == 9:
        accelerator.log({"val_loss": loss.item() * 1.1}, step=i)
        logged.append({"step": i, "val_loss": loss.item() * 1.1})
accelerator.end_training()
with open(sys.argv[1], "w") as handle:
    json.dump(logged, handle)
