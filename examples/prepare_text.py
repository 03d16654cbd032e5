"""Turn a text file into byte-level token files for training_together.py.

    python examples/prepare_text.py INPUT.txt OUT_DIR [--val-fraction 0.1]

Writes OUT_DIR/train.bin and OUT_DIR/val.bin: uint16 token ids (one per UTF-8 byte, so the
vocabulary is 256), read back with ``np.memmap(path, dtype=np.uint16, mode="r")``.
With no INPUT it uses the English documentation text that ships with CPython
(``pydoc_data.topics``), so no download is ever needed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

TOKEN_DTYPE = np.uint16


def builtin_corpus() -> str:
    """About 0.8 MB of English text about Python, from the standard library."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def write_token_files(text: str, out_dir: Path, val_fraction: float = 0.1) -> tuple[Path, Path]:
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction}")
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(TOKEN_DTYPE)
    split = int(len(data) * (1 - val_fraction))
    out_dir.mkdir(parents=True, exist_ok=True)
    train, val = out_dir / "train.bin", out_dir / "val.bin"
    # Written aside and renamed: processes preparing the same files at once (sweep workers,
    # data-parallel ranks) never read a half-written one.
    for path, part in ((val, data[split:]), (train, data[:split])):
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        part.tofile(tmp)
        os.replace(tmp, path)
    return train, val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", type=Path, help="text file (default: built-in corpus)")
    parser.add_argument("out_dir", nargs="?", type=Path, default=Path("data/pydoc_topics"))
    parser.add_argument("--val-fraction", type=float, default=0.1)
    args = parser.parse_args()
    text = args.input.read_text(encoding="utf-8") if args.input else builtin_corpus()
    train, val = write_token_files(text, args.out_dir, args.val_fraction)
    print(
        f"wrote {train} ({train.stat().st_size // 2} tokens) and {val} "
        f"({val.stat().st_size // 2} tokens)"
    )


if __name__ == "__main__":
    main()
