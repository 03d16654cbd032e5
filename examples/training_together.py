"""Train a small Transformer LM with experiment tracking (the project's main job).

    python examples/training_together.py                      # ~1 min on a laptop CPU
    python examples/training_together.py --sink wandb --wandb-project cs336
    python examples/training_together.py --device cuda --d-model 512 --num-layers 4 ...
    python examples/training_together.py --resume checkpoints/<run>.pt   # continue
    torchrun --nproc_per_node=4 examples/training_together.py ...       # data-parallel

With no --train-data/--val-data it trains byte-level (vocab 256) on the English
documentation text that ships with CPython, so it needs no download. Every optimizer step is
a gradient step; losses stay on the device and the tracker reads them in batches, so logging
does not stall a GPU. At the end it prints the summary and, with the ``plot`` extra, writes a
loss-curve PNG beside the run's JSON.

Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel (NCCL on CUDA, one GPU
per local rank; gloo on CPU): every rank draws its own batches (its sampler seeded with
[seed, rank]), rank 0 alone tracks and writes checkpoints (holding every rank's random
states, so --resume continues all of them), the logged losses are the means over ranks,
tokens/s counts every rank, and the config's batch_size is the sequences of one optimizer
step over all ranks (--batch-size x --grad-accum x world size).

Started by a W&B sweep agent (``wandb agent``, with examples/sweep.yaml), it takes the
hyperparameters as the agent passes them (``--lr=0.001``), and mirrors to the W&B run the
agent created (WANDB_RUN_ID), grouped by the sweep's id. ``train(args, report=...)`` is
what examples/sweep.py (Optuna) calls in its own process, once per trial.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_model import TransformerLM, cosine_lr  # noqa: E402
from prepare_text import TOKEN_DTYPE, builtin_corpus, write_token_files  # noqa: E402

from cs336_basics import flops_per_token  # noqa: E402
from cs336_basics.experiment_log import ExperimentConfig, ExperimentTracker  # noqa: E402


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless it says it in words)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default == []
            or default == argparse.SUPPRESS  # -h/--help: no default to show
        ):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train a Transformer LM with experiment tracking. Every setting is recorded "
        "in the run's config (see make_config).",
        formatter_class=_HelpFormatter,
    )

    def a(*names: str, **kwargs) -> None:
        """An option spelled --dash-case and --snake_case (the guide's spelling)."""
        spellings = list(names)
        for name in names:
            if name.startswith("--") and "-" in name[2:]:
                snake = "--" + name[2:].replace("-", "_")
                if snake not in spellings:
                    spellings.append(snake)
        p.add_argument(*spellings, **kwargs)

    a(
        "--wandb-run-name",
        dest="wandb_run_name",
        default="tinylm_pydoc",
        help="experiment name (also the W&B run name and the checkpoint's file name)",
    )
    a("--vocab-size", type=int, default=256, help="vocabulary size (256: byte-level)")
    a("--context-length", type=int, default=128, help="tokens per sequence")
    a("--d-model", type=int, default=128, help="model width")
    a("--num-heads", type=int, default=4, help="attention heads")
    a("--d-ff", type=int, default=352, help="feed-forward (SwiGLU) width")
    a("--num-layers", type=int, default=3, help="Transformer blocks")
    a("--rope-theta", type=float, default=10000.0, help="RoPE base")
    a(
        "--tie-embeddings",
        action="store_true",
        help="share the input embedding and output projection (default: separate)",
    )
    a(
        "--batch-size",
        type=int,
        default=16,
        help="sequences per micro-batch (the run's config records batch_size = this x "
        "--grad-accum, the sequences per optimizer step)",
    )
    a("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    a("--max-iters", type=int, default=400, help="optimizer steps in all")
    a("--lr", type=float, default=3e-3, help="peak learning rate (after warmup)")
    a("--min-lr", type=float, default=3e-4, help="learning rate at the end of the cosine decay")
    a("--warmup-iters", type=int, default=40, help="linear warmup steps")
    a("--weight-decay", type=float, default=0.1, help="AdamW weight decay")
    a("--grad-clip", type=float, default=1.0, help="gradient norm clipping threshold")
    a("--beta1", type=float, default=0.9, help="AdamW beta1")
    a("--beta2", type=float, default=0.95, help="AdamW beta2")
    a("--eps", type=float, default=1e-8, help="AdamW epsilon")
    a("--seed", type=int, default=0, help="seed of the initial weights and the batch sampler")
    a("--device", default="auto", help="cpu, cuda, cuda:N, mps, or auto (cuda when available)")
    a(
        "--dtype",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="fp32, or bf16 autocast; auto: bf16 on CUDA, else fp32",
    )
    a(
        "--log-interval",
        type=int,
        default=10,
        help="log the mean train loss every N optimizer steps",
    )
    a(
        "--eval-interval",
        type=int,
        default=50,
        help="evaluate every N optimizer steps (and at the end)",
    )
    a("--eval-iters", type=int, default=20, help="batches per evaluation of train and val loss")
    a(
        "--train-data",
        type=Path,
        help="uint16 token file (np.memmap), see prepare_text.py (default: the built-in "
        "corpus, tokenized into --data-dir)",
    )
    a(
        "--val-data",
        type=Path,
        help="uint16 validation token file; give it with --train-data (default: the built-in "
        "corpus's)",
    )
    a(
        "--data-dir",
        type=Path,
        default=Path("data/pydoc_topics"),
        help="where the built-in corpus is tokenized to",
    )
    a("--log-dir", type=Path, default=Path("experiment_logs"), help="where the run's log goes")
    a("--checkpoint-dir", type=Path, default=Path("checkpoints"), help="where checkpoints go")
    a(
        "--checkpoint-interval",
        type=int,
        default=200,
        help="save a checkpoint every N optimizer steps (and at the end)",
    )
    a(
        "--resume",
        type=Path,
        help="continue from a checkpoint written by this script: model, optimizer, RNG states "
        "and the same run log (default: start a new run)",
    )
    a(
        "--stop-at",
        type=int,
        help="stop after this iteration, as if preempted, with a checkpoint to --resume from "
        "(default: run to --max-iters)",
    )
    a(
        "--sink",
        action="append",
        default=[],
        choices=["wandb", "memory"],
        help="also send the run to this sink; repeatable (default: local log only)",
    )
    a(
        "--wandb-project",
        help="W&B project of --sink wandb (default: WANDB_PROJECT, else cs336-basics)",
    )
    a("--wandb-entity", help="W&B entity of --sink wandb (default: WANDB_ENTITY, else yours)")
    a("--notes", default="", help="notes stored with the finished run (default: none)")
    a(
        "--no-plot",
        action="store_true",
        help="write no loss-curve PNG at the end (default: write one)",
    )
    a("--quiet", action="store_true", help="no progress line or per-eval lines")
    a(
        "--system-interval",
        "--system_interval",
        dest="system_interval",
        type=float,
        default=None,
        help="seconds between samples of GPU/CPU/memory use, stored with the run "
        "(0: none; default: CS336_SYSTEM_INTERVAL, else 10)",
    )
    return p


#: Options that are not settings of the training: where files go, how the run is watched,
#: mirrored or interrupted. Every other option is recorded in the run's config.
NOT_RECORDED = frozenset(
    {
        "log_dir",
        "checkpoint_dir",
        "resume",
        "stop_at",
        "sink",
        "wandb_project",
        "wandb_entity",
        "notes",
        "no_plot",
        "quiet",
        "system_interval",
        "data_dir",  # recorded as the train_data/val_data files read from it
    }
)
#: Options recorded under the guide's name for them.
CONFIG_NAMES = {
    "wandb_run_name": "experiment_name",
    "lr": "max_learning_rate",
    "min_lr": "min_learning_rate",
    "batch_size": "micro_batch_size",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    for name in (
        "batch_size",
        "max_iters",
        "grad_accum",
        "log_interval",
        "eval_interval",
        "eval_iters",
        "checkpoint_interval",
    ):
        if getattr(args, name) < 1:
            p.error(
                f"--{name.replace('_', '-')}: expected a positive integer, "
                f"got {getattr(args, name)}"
            )
    return args


def pick_device(requested: str, local_rank: int | None = None) -> str:
    """The device to train on; under torchrun (``local_rank`` given) "auto" and "cuda" mean
    this rank's GPU, ``cuda:LOCAL_RANK``."""
    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available here")
        if requested == "cuda" and local_rank is not None:
            return f"cuda:{local_rank}"
        return requested
    if not torch.cuda.is_available():
        return "cpu"
    return "cuda" if local_rank is None else f"cuda:{local_rank}"


def distributed() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` as torchrun sets them, else ``(0, 0, 1)``."""
    world = int(os.environ.get("WORLD_SIZE") or 1)
    if world <= 1:
        return 0, 0, 1
    return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK") or 0), world


def mean_over_ranks(value: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of ``value`` over all ranks (no-op on one process; stays on the device)."""
    if world == 1:
        return value
    import torch.distributed as dist

    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world


def data_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The train and val token files this run reads (the built-in corpus's by default)."""
    if (args.train_data is None) != (args.val_data is None):
        raise SystemExit("--train-data and --val-data go together")
    if args.train_data is None:
        return args.data_dir / "train.bin", args.data_dir / "val.bin"
    return args.train_data, args.val_data


def load_tokens(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    train_path, val_path = data_paths(args)
    if args.train_data is None and not (train_path.exists() and val_path.exists()):
        write_token_files(builtin_corpus(), args.data_dir)
    train = np.memmap(train_path, dtype=TOKEN_DTYPE, mode="r")
    val = np.memmap(val_path, dtype=TOKEN_DTYPE, mode="r")
    for name, data in (("train", train), ("val", val)):
        if len(data) <= args.context_length + 1:
            raise SystemExit(f"{name} data has {len(data)} tokens; need > context_length + 1")
        top = int(data[:1_000_000].max())
        if top >= args.vocab_size:
            raise SystemExit(f"{name} data has token id {top} >= --vocab-size {args.vocab_size}")
    return train, val


def get_batch(data: np.ndarray, batch: int, ctx: int, device: str, gen: np.random.Generator):
    starts = gen.integers(0, len(data) - ctx - 1, size=batch)
    x = np.stack([data[s : s + ctx] for s in starts]).astype(np.int64)
    y = np.stack([data[s + 1 : s + 1 + ctx] for s in starts]).astype(np.int64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if device.startswith("cuda"):
        return xt.pin_memory().to(device, non_blocking=True), yt.pin_memory().to(
            device, non_blocking=True
        )
    return xt.to(device), yt.to(device)


@torch.no_grad()
def estimate_loss(model, data_sets, args, device, autocast, gen, world=1) -> dict[str, float]:
    """Mean loss over --eval-iters batches of each data set (and over ranks)."""
    model.eval()
    means = []
    for data in data_sets.values():
        losses = torch.zeros(args.eval_iters, device=device)
        for k in range(args.eval_iters):
            x, y = get_batch(data, args.batch_size, args.context_length, device, gen)
            with autocast():
                logits = model(x)
            losses[k] = torch.nn.functional.cross_entropy(
                logits.float().view(-1, logits.size(-1)), y.view(-1)
            )
        means.append(losses.mean())
    model.train()
    values = mean_over_ranks(torch.stack(means), world).tolist()
    return dict(zip(data_sets, values, strict=True))


def make_config(
    args: argparse.Namespace,
    device: str,
    dtype: str,
    world_size: int = 1,
    extra: dict | None = None,
) -> ExperimentConfig:
    """Every setting of the run (each option but those in NOT_RECORDED), so that a report's
    "differs from baseline" shows any of them. ``batch_size`` is the sequences of one
    optimizer step (micro-batch x accumulation x data-parallel ranks), so tokens per step
    are batch_size x context_length; the micro-batch (per rank) is ``micro_batch_size``.
    Device and dtype are the ones used ("auto" resolved); the data are the token files
    read; ``extra``: more values (a sweep's study and trial)."""
    settings = {
        CONFIG_NAMES.get(name, name): str(value) if isinstance(value, Path) else value
        for name, value in vars(args).items()
        if name not in NOT_RECORDED
    }
    train_path, val_path = data_paths(args)
    settings.update(
        batch_size=args.batch_size * args.grad_accum * world_size,
        world_size=world_size,
        device=device,
        dtype=dtype,
        optimizer_name="AdamW",
        train_data=str(train_path),
        val_data=str(val_path),
    )
    settings.update(extra or {})
    return ExperimentConfig(**settings)


def compute(args: argparse.Namespace, model, device: str, dtype: str, world: int) -> dict:
    """What the tracker needs for FLOPs and MFU: the model's training FLOPs per token
    (6N + the attention term, N without the input embedding table: cs336_basics.flops_per_token)
    and, on CUDA, the card and dtype whose peak FLOP/s MFU divides by."""
    embedding = 0 if args.tie_embeddings else model.embed.weight.numel()
    per_token = flops_per_token(
        model.num_parameters() - embedding, args.num_layers, args.d_model, args.context_length
    )
    out: dict = {"flops_per_token": per_token, "num_devices": world}
    if device.startswith("cuda"):
        out.update(device_name=torch.cuda.get_device_name(device), dtype=dtype)
    return out


def make_sinks(args: argparse.Namespace, agent_run_id: str | None = None) -> list:
    """The sinks of --sink; under a W&B sweep agent a W&B mirror to the agent's run always
    (the sweep reads its metric there), whether --sink wandb was given or not."""
    names = list(args.sink)
    if agent_run_id is not None and "wandb" not in names:
        names.append("wandb")
    sinks: list = []
    for name in names:
        if name == "wandb":
            from cs336_basics import WandbSink

            sinks.append(
                WandbSink(project=args.wandb_project, entity=args.wandb_entity, run_id=agent_run_id)
            )
        else:
            sinks.append(name)
    return sinks


def train(args: argparse.Namespace, report=None) -> ExperimentTracker:
    """Train one run; returns its tracker (a tracker that records nothing on ranks > 0).

    ``report``: called as ``report(iteration, val_loss)`` after every eval (on rank 0); when
    it returns True the training stops there and the run is finished (an Optuna pruner's
    verdict: see ``cs336_basics.sweep.TrialReporter``, whose ``config`` goes into the run's
    config and whose ``attach(tracker)`` is called before the run starts).
    """
    from cs336_basics.sweep import agent_run

    rank, local_rank, world = distributed()
    agent = agent_run()  # (sweep id, W&B run id) when a W&B sweep agent started us
    if agent is not None:  # one experiment name (and checkpoint) per agent run
        args = argparse.Namespace(**vars(args))
        args.wandb_run_name = f"{args.wandb_run_name}_{agent[1]}"
    device = pick_device(args.device, local_rank if world > 1 else None)
    if world > 1:
        import torch.distributed as dist

        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        return _train(args, report, device, rank, world, agent)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(args, report, device: str, rank: int, world: int, agent) -> ExperimentTracker:
    dtype = (
        args.dtype if args.dtype != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    )
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    gen = np.random.default_rng(args.seed if world == 1 else [args.seed, rank])
    train_data, val_data = load_tokens(args)
    verbose = rank == 0 and not args.quiet

    model = TransformerLM(
        args.vocab_size,
        args.context_length,
        args.d_model,
        args.num_layers,
        args.num_heads,
        args.d_ff,
        args.rope_theta,
        args.tie_embeddings,
    ).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.lr,
        betas=(args.beta1, args.beta2),
        eps=args.eps,
        weight_decay=args.weight_decay,
        fused=device.startswith("cuda"),
    )
    start_iter, run_path = 0, None
    if args.resume:
        ckpt = torch.load(args.resume, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_iter, run_path = ckpt["iteration"] + 1, ckpt["tracker_run"]
        per_rank = ckpt.get("rng_ranks")
        if per_rank is not None and len(per_rank) == world:  # every rank goes on as it was
            restore_rng_states(per_rank[rank], gen, device)
        elif "rng" in ckpt and world == 1:  # the sampler goes on: as if never interrupted
            restore_rng_states(ckpt["rng"], gen, device)
        else:  # an older checkpoint, or another number of ranks: fresh draws
            gen = np.random.default_rng([args.seed, rank, start_iter])
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        cuda = device.startswith("cuda")
        net = DistributedDataParallel(
            model, device_ids=[torch.device(device).index] if cuda else None
        )

    def autocast():
        if dtype == "bf16":
            return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
        return contextlib.nullcontext()

    extra = dict(getattr(report, "config", None) or {})
    if agent is not None:
        extra["wandb_sweep_id"] = agent[0]
    train_path, val_path = data_paths(args)
    tracker = ExperimentTracker(
        make_config(args, device, dtype, world, extra),
        log_dir=args.log_dir,
        sinks=make_sinks(args, agent[1] if agent else None) if rank == 0 else [],
        resume=run_path,
        system_interval=args.system_interval,
        **compute(args, model, device, dtype, world),
        data_files={"train": train_path, "val": val_path},  # fingerprinted in provenance
    )
    if rank == 0 and hasattr(report, "attach"):
        report.attach(tracker)  # before start(): a mirror sees the run's group
    elif agent is not None:
        tracker.set_attributes(group=agent[0])
    tracker.start()
    tracker.gradient_step = start_iter
    if rank == 0:
        ranks = f" x {world} ranks" if world > 1 else ""
        print(
            f"run {tracker.run_id}: {model.num_parameters() / 1e6:.2f}M parameters on {device}"
            f"{ranks} ({dtype}), {len(train_data):,} training tokens; log {tracker.path}",
            flush=True,
        )

    # Tokens of one optimizer step, every rank's.
    tokens_per_step = args.batch_size * args.grad_accum * args.context_length * world
    pending: list[torch.Tensor] = []
    window_start, window_steps = time.perf_counter(), 0
    last_eval = ""
    bar = progress_bar(args, start_iter) if rank == 0 else None  # None: plain lines
    live_progress = bar is not None
    shown_loss = float("nan")
    losses = {"train": float("nan"), "val": float("nan")}
    stopped_by_report = False
    it = start_iter
    for it in range(start_iter, args.max_iters):
        lr = cosine_lr(it, args.lr, args.min_lr, args.warmup_iters, args.max_iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = torch.zeros((), device=device)
        for micro in range(args.grad_accum):
            x, y = get_batch(train_data, args.batch_size, args.context_length, device, gen)
            # DDP averages the gradients across ranks on the last micro-batch only.
            last = micro == args.grad_accum - 1
            with contextlib.nullcontext() if world == 1 or last else net.no_sync():
                with autocast():
                    logits = net(x)
                loss = torch.nn.functional.cross_entropy(
                    logits.float().view(-1, logits.size(-1)), y.view(-1)
                )
                (loss / args.grad_accum).backward()
            step_loss += loss.detach() / args.grad_accum
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        pending.append(step_loss)
        window_steps += 1

        if (it + 1) % args.log_interval == 0 or it + 1 == args.max_iters:
            # Wall time over the window: no per-step sync; the device queue is bounded, so
            # over a window the host-side clock tracks the device's throughput.
            elapsed = time.perf_counter() - window_start
            iter_time = elapsed / window_steps
            tracker.log_metrics(
                iteration=it,
                # the mean over the window and the ranks; stays on the device: no sync here
                train_loss=mean_over_ranks(torch.stack(pending).mean(), world),
                learning_rate=lr,
                tokens_per_sec=tokens_per_step / iter_time,
                iter_time_ms=iter_time * 1000,
                gradient_step=it + 1,
                grad_norm=grad_norm.detach(),
            )
            if bar is not None:
                shown = tracker.last_read_row  # read off the device by the tracker: no sync
                if shown is not None and shown.train_loss is not None:
                    shown_loss = shown.train_loss
                bar.set_postfix_str(
                    f"loss {shown_loss:.3f} | {tokens_per_step / iter_time:,.0f} tok/s "
                    f"| lr {lr:.2e}{last_eval}",
                    refresh=False,
                )
                bar.update(it + 1 - bar.n)
            pending.clear()
            window_start, window_steps = time.perf_counter(), 0
        tracker.increment_gradient_step()

        if (it + 1) % args.eval_interval == 0 or it + 1 == args.max_iters:
            losses = estimate_loss(
                model, {"train": train_data, "val": val_data}, args, device, autocast, gen, world
            )
            tracker.log_eval(iteration=it, train_loss=losses["train"], val_loss=losses["val"])
            last_eval = f" | val {losses['val']:.3f}"
            if verbose and not live_progress:
                print(
                    f"iter {it + 1}/{args.max_iters}: train {losses['train']:.3f} "
                    f"val {losses['val']:.3f}",
                    flush=True,
                )
            if report is not None:
                stop = bool(report(it, losses["val"])) if rank == 0 else False
                stopped_by_report = agree(stop, world, device)
                if stopped_by_report:
                    break
            window_start = time.perf_counter()  # keep eval time out of the step timing
        if (
            (it + 1) % args.checkpoint_interval == 0
            or it + 1 == args.max_iters
            or it == args.stop_at
        ):
            save_checkpoint(args, model, optimizer, it, tracker, gen, device, world)
        if args.stop_at is not None and it >= args.stop_at:
            break
    if bar is not None:
        bar.close()
    if not stopped_by_report and args.stop_at is not None and it < args.max_iters - 1:
        tracker.save()
        tracker.close()
        if rank == 0:
            print(f"stopped after iteration {it}; resume with --resume {checkpoint_path(args)}")
        return tracker
    why = getattr(report, "note", None) if stopped_by_report else None
    notes = "\n".join(n for n in (args.notes, why) if n) or None
    tracker.finish(train_loss=losses["train"], val_loss=losses["val"], notes=notes)
    tracker.save()
    if rank == 0:
        if not (args.quiet and report is not None):  # (a sweep's trials: one line each)
            tracker.print_summary()
        if not args.no_plot:
            write_plot(tracker)
    return tracker


def agree(stop: bool, world: int, device: str) -> bool:
    """Rank 0's decision to stop, on every rank (all ranks leave the loop together)."""
    if world == 1:
        return stop
    import torch.distributed as dist

    flag = torch.tensor([1 if stop else 0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def progress_bar(args: argparse.Namespace, start_iter: int):
    """A tqdm bar (loss, tokens/s, lr, last val loss, ETA) when stdout is a terminal and
    tqdm is installed (the ``train`` extra); else None, and the loop prints plain lines."""
    if args.quiet or not sys.stdout.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=args.max_iters,
        initial=start_iter,
        unit="it",
        dynamic_ncols=True,
        file=sys.stdout,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
    )


def checkpoint_path(args: argparse.Namespace) -> Path:
    return args.checkpoint_dir / f"{args.wandb_run_name}.pt"


def rng_states(gen: np.random.Generator, device: str) -> dict:
    """Every random state the training draws from: the batch sampler (numpy), torch's CPU
    generator and, on CUDA, the device's generators."""
    states = {"numpy": gen.bit_generator.state, "torch": torch.get_rng_state()}
    if device.startswith("cuda"):
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict, gen: np.random.Generator, device: str) -> None:
    """Undo :func:`rng_states` (a resumed run draws what the uninterrupted one would)."""
    gen.bit_generator.state = states["numpy"]
    torch.set_rng_state(states["torch"].cpu())  # torch.load's map_location may have moved it
    if "cuda" in states and device.startswith("cuda"):
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def save_checkpoint(
    args, model, optimizer, it: int, tracker: ExperimentTracker, gen, device: str, world: int = 1
) -> None:
    """Rank 0 writes the model, optimizer, iteration, run and every rank's random states
    (called on every rank: gathering the states is a collective)."""
    states = rng_states(gen, device)
    per_rank = [states]
    if world > 1:
        import torch.distributed as dist

        per_rank = [None] * world
        dist.all_gather_object(per_rank, states)
        if dist.get_rank() != 0:
            return
    tracker.save()  # the run's JSON matches the checkpoint
    path = checkpoint_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "iteration": it,
            "tracker_run": str(tracker.path),
            "rng": states,
            "rng_ranks": per_rank,
            "world_size": world,
            "args": vars(args),
        },
        tmp,
    )
    tmp.replace(path)


def write_plot(tracker: ExperimentTracker) -> None:
    from cs336_basics import plot_runs

    assert tracker.path is not None
    try:
        import matplotlib.pyplot as plt

        for x in ("gradient_step", "wallclock"):
            out = tracker.path.with_name(f"{tracker.path.stem}_{x}.png")
            plt.close(plot_runs([tracker.log], x=x, out=out))
            print(f"loss curve: {out}")
    except Exception as exc:  # matplotlib missing or broken: the run itself is saved
        print(f"no plot written ({exc}); install the plot extra: pip install 'cs336-basics[plot]'")


if __name__ == "__main__":
    train(parse_args())
