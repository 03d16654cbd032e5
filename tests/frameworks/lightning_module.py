"""A tiny Lightning run with ``WandbLogger`` and ``LearningRateMonitor``, CPU, 30 steps, as
users write them. Run through ``python -m cs336_basics.wandb_compat`` by
tests/test_frameworks.py.

    python lightning_module.py SAVE_DIR LOGGED_JSON

LOGGED_JSON receives every ``log_metrics`` call the logger got (metrics and step).
"""

import json
import sys

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import WandbLogger


class Tiny(L.LightningModule):
    def __init__(self, lr: float = 1e-2, hidden: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loader(n: int, seed: int) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=8
    )


class RecordingLogger(WandbLogger):
    """The W&B logger, noting what it is asked to log (for the test to compare)."""

    logged: list = []

    def log_metrics(self, metrics, step=None):
        self.logged.append({"step": step, **{k: float(v) for k, v in metrics.items()}})
        super().log_metrics(metrics, step)


L.seed_everything(0, verbose=False)
logger = RecordingLogger(project="lightning-tiny", name="lightning-tiny", save_dir=sys.argv[1])
trainer = L.Trainer(
    max_steps=30,
    accelerator="cpu",
    devices=1,
    logger=logger,
    callbacks=[LearningRateMonitor(logging_interval="step")],
    log_every_n_steps=5,
    val_check_interval=10,
    check_val_every_n_epoch=None,
    limit_val_batches=2,
    enable_checkpointing=False,
    default_root_dir=sys.argv[1],
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(Tiny(), loader(256, 0), loader(32, 1))
with open(sys.argv[2], "w") as handle:
    json.dump(RecordingLogger.logged, handle)
