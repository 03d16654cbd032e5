"""A tiny Hugging Face Trainer run that reports to W&B (``report_to=["wandb"]``), as users
write them: a randomly initialised 1-layer GPT-2, in-memory data, CPU, nothing downloaded.
Run through ``python -m cs336_basics.wandb_compat`` by tests/test_frameworks.py.

    python hf_trainer.py OUTPUT_DIR LOGGED_JSON

LOGGED_JSON receives the Trainer's own log history (what it handed to the W&B callback).
"""

import json
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments


class TinyLM(torch.utils.data.Dataset):
    def __init__(self, n: int, seq: int = 16, vocab: int = 64, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, vocab, (n, seq), generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.x[i], "labels": self.x[i]}


torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=64, n_positions=32))
args = TrainingArguments(
    output_dir=sys.argv[1],
    max_steps=30,
    per_device_train_batch_size=4,
    per_device_eval_batch_size=4,
    learning_rate=1e-3,
    warmup_steps=5,
    logging_steps=5,
    eval_strategy="steps",
    eval_steps=10,
    save_strategy="no",
    report_to=["wandb"],
    run_name="hf-tiny",
    use_cpu=True,
    dataloader_num_workers=0,
    disable_tqdm=True,
    seed=0,
)
trainer = Trainer(model=model, args=args, train_dataset=TinyLM(64), eval_dataset=TinyLM(16, seed=1))
trainer.train()
with open(sys.argv[2], "w") as handle:
    json.dump(trainer.state.log_history, handle)
