"""``wandb.sdk`` as the drop-in provides it: only what frameworks import (``lib``)."""
