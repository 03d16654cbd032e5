#!/usr/bin/env python3
"""Run every command the README shows, as written, in a fresh clone of this repository.

    python .ci/readme_check.py [README.md]

Each ```bash block is run line by line (a line ending in a backslash continues), in order,
from the clone's root, with the clone's `.venv/bin` first on PATH once the README's first
command has made it (as a user who activated it). A block whose fence says
```bash no-run: REASON is shown, not run, and the reason is printed: what needs a W&B
account, the network, a GPU, or is the test command CI runs anyway. A command followed by
the comment `# (runs until Ctrl-C)` is a server: it must still be running after a few
seconds, then it is stopped. Any other command must exit 0. Prints each command, its time
and the last lines of its output when it fails; exits 1 on the first failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```bash(.*)$")
SERVER = "# (runs until Ctrl-C)"


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """(fence info, lines) of every ```bash block."""
    found: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    info = ""
    for line in text.splitlines():
        if current is None:
            match = FENCE.match(line)
            if match:
                current, info = [], match.group(1).strip()
        elif line.startswith("```"):
            found.append((info, current))
            current = None
        else:
            current.append(line)
    return found


def commands(lines: list[str]) -> list[str]:
    out: list[str] = []
    pending = ""
    for line in lines:
        pending += line
        if line.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        text = pending.strip()
        pending = ""
        if text and not text.startswith("#"):
            out.append(text)
    return out


def run(command: str, cwd: Path, env: dict[str, str]) -> bool:
    print(f"$ {command}", flush=True)
    started = time.monotonic()
    if SERVER in command:
        process = subprocess.Popen(
            ["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        time.sleep(6)
        alive = process.poll() is None
        os.killpg(process.pid, 15)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
        print(f"  ({'still serving' if alive else 'ended'} after 6 s)", flush=True)
        if not alive:
            print(output[-3000:])
        return alive
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", command], cwd=cwd, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    print(f"  ({time.monotonic() - started:.0f} s, exit {result.returncode})", flush=True)
    if result.returncode != 0:
        print((result.stdout + result.stderr)[-3000:])
    return result.returncode == 0


def main() -> int:
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "README.md")
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        env = dict(os.environ)
        env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
        env.pop("VIRTUAL_ENV", None)
        env.setdefault("WANDB_MODE", "offline")  # no W&B account here: the mirror says so
        for info, lines in blocks(readme.read_text()):
            if info.startswith("no-run"):
                for command in commands(lines):
                    print(f"not run ({info.partition(':')[2].strip()}): {command}")
                continue
            for command in commands(lines):
                if not run(command, clone, env):
                    print(f"README command failed: {command}", file=sys.stderr)
                    return 1
    print("every README command ran")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
