"""Model FLOPs of a decoder-only Transformer, accelerators' peak FLOP/s, and MFU (pure).

**FLOPs per token** (training: forward + backward), the convention of PaLM (Chowdhery et
al. 2022, appendix B) and of Kaplan et al. 2020 (section 2.1, Table 1, whose ``C ~ 6N``
this extends with the attention term)::

    flops_per_token = 6 * N + 12 * n_layers * d_model * context_length

- ``N`` is the number of parameters that take part in a matrix multiply for every token:
  every parameter **except the input token-embedding table** (a lookup costs no FLOPs).
  The output projection counts (2 * d_model * vocab FLOPs forward, whether or not it is
  tied to the embedding; a tied matrix is counted once). A multiply-add is 2 FLOPs, and
  the backward pass costs twice the forward pass: 2N + 4N = 6N.
- ``12 * n_layers * d_model * context_length``: attention's two matrix products per layer
  (scores ``Q K^T`` and the weighted sum ``A V``: 2 * d_model * T each, forward), times 3
  for training. As in PaLM (and nanoGPT's ``estimate_mfu``) the whole T x T matrix is
  counted, not halved for the causal mask: the number MFU comparisons use.
- Not counted (small): norms, softmax, activations, RoPE, the loss.

:func:`decoder_params` counts the parameters of this project's example model
(``examples/lm_model.py``: pre-norm RMSNorm, fused bias-free QKV and output projections,
SwiGLU with three bias-free matrices, a final RMSNorm, an output head, optionally tied).

**Peak FLOP/s**: :data:`PEAK_FLOPS`, dense (no 2:4 sparsity) tensor-core figures from the
vendors' datasheets, per dtype; :func:`peak_flops` looks one up by the device name
``torch.cuda.get_device_name()`` reports. An unknown device or dtype gives ``None``: MFU is
then absent, never guessed.

**MFU** (model FLOPs utilisation, PaLM appendix B): achieved model FLOP/s over peak::

    mfu = tokens_per_sec * flops_per_token / peak_flops

where ``peak_flops`` is the peak of all the devices that ``tokens_per_sec`` counts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

TERA = 1e12

#: Dense peak FLOP/s by accelerator and dtype (``bf16``, ``fp16``, ``tf32``: tensor cores,
#: dense; ``fp32``: plain CUDA cores). Sources, the vendors' datasheets (their tensor
#: figures marked "with sparsity" halved):
#:
#: - H100 SXM, H100 PCIe, H100 NVL: NVIDIA H100 Tensor Core GPU datasheet (2023):
#:   BF16/FP16 1979/1513/1671 sparse, TF32 989/756/835 sparse, FP32 67/51/60 TFLOPS.
#: - H200 (SXM), H200 NVL: NVIDIA H200 Tensor Core GPU datasheet (2024): BF16/FP16
#:   1979/1671 sparse, TF32 989/835 sparse, FP32 67/60 TFLOPS.
#: - A100 (SXM and PCIe, 40 and 80 GB): NVIDIA A100 Tensor Core GPU datasheet (2021):
#:   BF16/FP16 312, TF32 156, FP32 19.5 TFLOPS dense.
#: - L4: NVIDIA L4 Tensor Core GPU datasheet (2023): BF16/FP16 242 sparse, TF32 120 sparse,
#:   FP32 30.3 TFLOPS.
#: - GeForce RTX 4090: NVIDIA Ada Lovelace GPU architecture whitepaper (v2.1), appendix
#:   table: FP16/BF16 tensor with FP32 accumulate (what autocast uses) 165.2 dense, TF32
#:   82.6 dense, FP32 82.6 TFLOPS.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H100 SXM": {
        "bf16": 989.5 * TERA,
        "fp16": 989.5 * TERA,
        "tf32": 494.5 * TERA,
        "fp32": 67 * TERA,
    },
    "H100 PCIe": {
        "bf16": 756.5 * TERA,
        "fp16": 756.5 * TERA,
        "tf32": 378 * TERA,
        "fp32": 51 * TERA,
    },
    "H100 NVL": {
        "bf16": 835.5 * TERA,
        "fp16": 835.5 * TERA,
        "tf32": 417.5 * TERA,
        "fp32": 60 * TERA,
    },
    "H200": {"bf16": 989.5 * TERA, "fp16": 989.5 * TERA, "tf32": 494.5 * TERA, "fp32": 67 * TERA},
    "H200 NVL": {
        "bf16": 835.5 * TERA,
        "fp16": 835.5 * TERA,
        "tf32": 417.5 * TERA,
        "fp32": 60 * TERA,
    },
    "A100": {"bf16": 312 * TERA, "fp16": 312 * TERA, "tf32": 156 * TERA, "fp32": 19.5 * TERA},
    "L4": {"bf16": 121 * TERA, "fp16": 121 * TERA, "tf32": 60 * TERA, "fp32": 30.3 * TERA},
    "RTX 4090": {
        "bf16": 165.2 * TERA,
        "fp16": 165.2 * TERA,
        "tf32": 82.6 * TERA,
        "fp32": 82.6 * TERA,
    },
}

#: Device names as ``torch.cuda.get_device_name()`` reports them (lower case, the leading
#: ``NVIDIA `` removed), matched whole, the more specific first.
_DEVICE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), key)
    for pattern, key in (
        (r"h200 nvl", "H200 NVL"),
        (r"h200( \d+gb)?( hbm3e?)?( sxm\d*)?", "H200"),
        (r"h100 nvl", "H100 NVL"),
        (r"h100( \d+gb)?( hbm\w*)? ?pcie", "H100 PCIe"),
        (r"h100( \d+gb)?( hbm3)?( sxm\d*)?", "H100 SXM"),
        (r"a100[- ](sxm\d?[- ])?(pcie[- ])?\d+gb( pcie)?", "A100"),
        (r"a100[- ]sxm\d?", "A100"),
        (r"a100", "A100"),
        (r"l4", "L4"),
        (r"(geforce )?rtx 4090", "RTX 4090"),
    )
)

#: Dtype spellings (torch's, numpy's, short ones) -> the table's.
_DTYPES = {
    "bf16": "bf16",
    "bfloat16": "bf16",
    "torch.bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "torch.float16": "fp16",
    "torch.half": "fp16",
    "tf32": "tf32",
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "torch.float32": "fp32",
    "torch.float": "fp32",
}


def device_key(device_name: str) -> str | None:
    """The :data:`PEAK_FLOPS` key of a device name (``"NVIDIA H100 80GB HBM3"`` -> ``"H100
    SXM"``), or None for a device not in the table (never a guess)."""
    name = " ".join(str(device_name).lower().split())
    name = name.removeprefix("nvidia ")
    for pattern, key in _DEVICE_PATTERNS:
        if pattern.fullmatch(name):
            return key
    return None


def dtype_key(dtype: Any) -> str | None:
    """``"bf16"``, ``"fp16"``, ``"tf32"`` or ``"fp32"`` for a dtype or its name; None."""
    return _DTYPES.get(str(dtype).strip().lower())


def peak_flops(device_name: str, dtype: Any, num_devices: int = 1) -> float | None:
    """Dense peak FLOP/s of ``num_devices`` devices called ``device_name`` computing in
    ``dtype`` (see :data:`PEAK_FLOPS`); None when the device or dtype is not in the table."""
    key, kind = device_key(device_name), dtype_key(dtype)
    if key is None or kind is None:
        return None
    return PEAK_FLOPS[key][kind] * num_devices


@dataclass(frozen=True)
class ParamCount:
    """Parameters of a decoder: all of them, the input embedding table's, and the rest
    (``non_embedding``: the ``N`` of :func:`flops_per_token`)."""

    total: int
    embedding: int
    non_embedding: int


def decoder_params(
    vocab_size: int, d_model: int, num_layers: int, d_ff: int, *, tie_embeddings: bool = False
) -> ParamCount:
    """The parameters of the example's decoder (see the module docstring), counted by hand:

    - per layer: two RMSNorm weights (2 d), QKV (3 d^2), output projection (d^2), SwiGLU
      (3 d d_ff): ``2d + 4d^2 + 3 d d_ff``;
    - a final RMSNorm (d), the token embedding (V d) and the output head (V d, shared with
      the embedding when tied).
    """
    per_layer = 2 * d_model + 4 * d_model * d_model + 3 * d_model * d_ff
    embedding = vocab_size * d_model
    head = 0 if tie_embeddings else vocab_size * d_model
    total = num_layers * per_layer + d_model + embedding + head
    # Tied: the one matrix is used as the head (a matmul per token), so it counts in N.
    non_embedding = total - (0 if tie_embeddings else embedding)
    return ParamCount(total, embedding, non_embedding)


def flops_per_token(
    non_embedding_params: int, num_layers: int, d_model: int, context_length: int
) -> int:
    """Training FLOPs per token: ``6 N + 12 n_layers d_model context_length`` (see the
    module docstring for what ``N`` counts and the sources)."""
    for name, value in (
        ("non_embedding_params", non_embedding_params),
        ("num_layers", num_layers),
        ("d_model", d_model),
        ("context_length", context_length),
    ):
        if type(value) is not int or value < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return 6 * non_embedding_params + 12 * num_layers * d_model * context_length


def mfu(
    tokens_per_sec: float | None, flops_per_token: float | None, peak: float | None
) -> float | None:
    """Model FLOPs utilisation: ``tokens_per_sec * flops_per_token / peak`` (None when any is
    unknown, or the throughput is not a finite number)."""
    if tokens_per_sec is None or flops_per_token is None or not peak:
        return None
    if not math.isfinite(tokens_per_sec):
        return None
    return tokens_per_sec * flops_per_token / peak
