"""A training script in the shape of nanoGPT's ``train.py``: settings as module globals,
overridden by ``--key=value`` arguments, the logged config built from those globals, one
``wandb.log`` per evaluation (``iter``, ``train/loss``, ``val/loss``, ``lr``, ``mfu``; the
losses 0-d tensors), no ``step=`` and no ``finish()``. A tiny bigram model trains on
Python's own documentation text, on the CPU. Run through ``python -m
cs336_basics.wandb_compat`` by tests/test_frameworks.py; ``--logged_json=PATH`` receives
what was passed to ``wandb.log``.
"""

import math
import sys

import torch

# -----------------------------------------------------------------------------
# settings, as nanoGPT declares them
out_dir = "out"
eval_interval = 5
eval_iters = 2
wandb_log = True
wandb_project = "owt"
wandb_run_name = "gpt2"
batch_size = 4
block_size = 16
n_layer = 1
n_embd = 16
learning_rate = 1e-2
max_iters = 20
warmup_iters = 2
min_lr = 1e-3
seed = 1337
logged_json = ""
config_keys = [
    k
    for k, v in globals().items()
    if not k.startswith("_") and isinstance(v, (int, float, bool, str))
]
for arg in sys.argv[1:]:  # nanoGPT's configurator.py: --key=value overrides
    key, value = arg[2:].split("=", 1)
    globals()[key] = (
        type(globals()[key])(value) if not isinstance(globals()[key], bool) else value == "True"
    )
config = {k: globals()[k] for k in config_keys if k != "logged_json"}
# -----------------------------------------------------------------------------

from pydoc_data.topics import topics  # noqa: E402

text = "".join(topics.values())[:20000].encode()
data = torch.tensor(list(text), dtype=torch.long)
torch.manual_seed(seed)
model = torch.nn.Embedding(256, 256)
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)


def get_batch():
    ix = torch.randint(len(data) - block_size - 1, (batch_size,))
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])
    return x, y


def get_lr(it):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    ratio = (it - warmup_iters) / (max_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


@torch.no_grad()
def estimate_loss():
    out = {}
    for split in ("train", "val"):
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            x, y = get_batch()
            losses[k] = torch.nn.functional.cross_entropy(model(x).view(-1, 256), y.view(-1))
        out[split] = losses.mean()
    return out


if wandb_log:
    import wandb

    wandb.init(project=wandb_project, name=wandb_run_name, config=config)
logged = []
running_mfu = -1.0
for iter_num in range(max_iters + 1):
    lr = get_lr(iter_num)
    for group in optimizer.param_groups:
        group["lr"] = lr
    if iter_num % eval_interval == 0:
        losses = estimate_loss()
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        if wandb_log:
            row = {
                "iter": iter_num,
                "train/loss": losses["train"],
                "val/loss": losses["val"],
                "lr": lr,
                "mfu": running_mfu * 100,
            }
            wandb.log(row)
            logged.append({k: float(v) for k, v in row.items()})
    x, y = get_batch()
    loss = torch.nn.functional.cross_entropy(model(x).view(-1, 256), y.view(-1))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    running_mfu = 0.3
if logged_json:
    import json

    with open(logged_json, "w") as handle:
        json.dump(logged, handle)
