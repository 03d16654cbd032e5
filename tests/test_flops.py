"""core.flops: the FLOPs formula against a hand count, the peak table, MFU in a run."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from helpers import need

from cs336_basics import ExperimentConfig, ExperimentTracker, load_experiment_log
from cs336_basics.core import flops
from cs336_basics.core.text import format_summary

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# The example's default model (examples/training_together.py's defaults).
VOCAB, CONTEXT, D_MODEL, LAYERS, HEADS, D_FF = 256, 128, 128, 3, 4, 352


def test_hand_count_of_the_example_model() -> None:
    # Counted by hand from examples/lm_model.py, per block: two RMSNorm weights (2 x 128),
    # qkv 128 x 384, out 128 x 128, SwiGLU w1 and w3 128 x 352, w2 352 x 128.
    block = 2 * 128 + 128 * 384 + 128 * 128 + 2 * 128 * 352 + 352 * 128
    assert block == 200_960
    total = 3 * block + 128 + 256 * 128 + 256 * 128  # final norm, embedding, head
    assert total == 668_544
    counted = flops.decoder_params(VOCAB, D_MODEL, LAYERS, D_FF)
    assert (counted.total, counted.embedding, counted.non_embedding) == (
        668_544,
        32_768,
        635_776,
    )
    # 6 N + 12 L d T, with N = every parameter but the input embedding table.
    per_token = flops.flops_per_token(counted.non_embedding, LAYERS, D_MODEL, CONTEXT)
    assert per_token == 6 * 635_776 + 12 * 3 * 128 * 128 == 4_404_480
    tied = flops.decoder_params(VOCAB, D_MODEL, LAYERS, D_FF, tie_embeddings=True)
    assert tied.total == 668_544 - 32_768 and tied.non_embedding == tied.total


def test_the_count_matches_the_model_itself() -> None:
    torch = need("torch")
    sys.path.insert(0, str(EXAMPLES))
    try:
        from lm_model import TransformerLM
    finally:
        sys.path.remove(str(EXAMPLES))
    for tie in (False, True):
        model = TransformerLM(VOCAB, CONTEXT, D_MODEL, LAYERS, HEADS, D_FF, tie_embeddings=tie)
        counted = flops.decoder_params(VOCAB, D_MODEL, LAYERS, D_FF, tie_embeddings=tie)
        assert model.num_parameters() == counted.total
        matmul = counted.total - (0 if tie else model.embed.weight.numel())
        assert counted.non_embedding == matmul
    # Another shape, CS336 size: the formula is not tuned to the default.
    model = TransformerLM(10_000, 256, 512, 4, 16, 1344)
    counted = flops.decoder_params(10_000, 512, 4, 1344)
    assert model.num_parameters() == counted.total
    del torch


@pytest.mark.parametrize(
    ("name", "dtype", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.5),
        ("NVIDIA H100 80GB HBM3", "torch.float32", 67),
        ("NVIDIA H100 PCIe", "fp16", 756.5),
        ("NVIDIA H100 NVL", "bfloat16", 835.5),
        ("NVIDIA H200", "bf16", 989.5),
        ("NVIDIA H200 NVL", "tf32", 417.5),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312),
        ("NVIDIA A100-SXM4-40GB", "tf32", 156),
        ("NVIDIA A100-PCIE-40GB", "fp32", 19.5),
        ("NVIDIA A100 80GB PCIe", "fp16", 312),
        ("NVIDIA L4", "bf16", 121),
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2),
        ("NVIDIA GeForce RTX 4090", "fp32", 82.6),
    ],
)
def test_peak_table(name: str, dtype: str, tflops: float) -> None:
    assert flops.peak_flops(name, dtype) == pytest.approx(tflops * 1e12)
    assert flops.peak_flops(name, dtype, num_devices=8) == pytest.approx(8 * tflops * 1e12)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("NVIDIA L40S", "bf16"),  # not in the table: never the L4's figure
        ("NVIDIA GeForce RTX 4090 Laptop GPU", "bf16"),
        ("NVIDIA GeForce RTX 4090 D", "bf16"),
        ("Tesla V100-SXM2-16GB", "fp16"),
        ("NVIDIA H100 80GB HBM3", "int8"),
        ("cpu", "fp32"),
    ],
)
def test_unknown_devices_and_dtypes_have_no_peak(name: str, dtype: str) -> None:
    assert flops.peak_flops(name, dtype) is None


def test_mfu_formula() -> None:
    assert flops.mfu(1e5, 4e9, 1e15) == pytest.approx(0.4)
    assert flops.mfu(None, 4e9, 1e15) is None
    assert flops.mfu(1e5, None, 1e15) is None
    assert flops.mfu(1e5, 4e9, None) is None
    assert flops.mfu(math.nan, 4e9, 1e15) is None


def test_tracker_derives_flops_and_mfu(tmp_path: Path) -> None:
    config = ExperimentConfig(experiment_name="mfu", batch_size=4, context_length=8)
    tracker = ExperimentTracker(
        config,
        log_dir=tmp_path,
        flops_per_token=1e9,
        device_name="NVIDIA A100-SXM4-80GB",
        dtype="bf16",
        system_interval=0,
    )
    for i in range(150):
        tps = 1e5 if i < 40 else 3.12e5  # MFU 0.32 then 1.0: the last 100 rows decide
        tracker.log_metrics(iteration=i, train_loss=2.0, tokens_per_sec=tps)
        tracker.increment_gradient_step()
    tracker.finish()
    log = load_experiment_log(tracker.path)
    assert log.compute == {
        "flops_per_token": 1e9,
        "device_name": "NVIDIA A100-SXM4-80GB",
        "dtype": "bf16",
        "num_devices": 1,
        "peak_flops": 312e12,
    }
    rows, values = log.mfu_values()
    assert rows is None and values[0] == pytest.approx(1e5 * 1e9 / 312e12)
    results = log.results()
    assert results.mfu == pytest.approx(1.0)
    assert results.flops == 150 * 32 * 1e9
    flops_axis = log.axis_values("flops")
    assert list(flops_axis[:3]) == [32e9, 64e9, 96e9]  # gradient steps x 32 tokens x 1e9
    assert "MFU:              100.0% (median of the last 100 rows)" in format_summary(log)


def test_unknown_device_leaves_mfu_absent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="cs336_basics")
    config = ExperimentConfig(experiment_name="cpu", batch_size=4, context_length=8)
    tracker = ExperimentTracker(
        config, log_dir=tmp_path, flops_per_token=1e6, device_name="cpu", dtype="fp32"
    )
    assert "no peak FLOP/s for device 'cpu'" in caplog.text
    tracker.log_metrics(iteration=0, train_loss=2.0, tokens_per_sec=1e5)
    tracker.finish()
    log = load_experiment_log(tracker.path)
    assert "peak_flops" not in log.compute and log.mfu_values() is None
    assert log.results().mfu is None and log.results().flops == 32e6
    with pytest.raises(ValueError, match="device_name= and dtype= go together"):
        ExperimentTracker(config, log_dir=tmp_path, device_name="NVIDIA L4")
    with pytest.raises(ValueError, match="flops_per_token"):
        ExperimentTracker(config, log_dir=tmp_path, flops_per_token=-1)


def test_logged_mfu_is_the_fallback(tmp_path: Path) -> None:
    tracker = ExperimentTracker(ExperimentConfig(experiment_name="nanogpt"), log_dir=tmp_path)
    for i, value in enumerate([0.1, 0.3, 0.2]):
        tracker.log_metrics(iteration=i, train_loss=2.0, mfu=value)
    tracker.finish()
    assert tracker.log.results().mfu == pytest.approx(0.2)
