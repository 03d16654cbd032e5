"""Where a run came from, recorded when it starts: the document's ``provenance`` object.

Everything here is read from this machine, with no network, in a thread of its own (the
tracker starts it at ``start()``; ``finish()`` and ``close()`` wait for it), so the
training loop never waits for ``git`` or ``nvidia-smi``:

- ``git``: the repository of the code that runs (the folder of the script, ``sys.argv[0]``,
  unless that lies inside the Python installation, as ``pytest`` or ``python -m`` of an
  installed module do; then the current folder): commit, branch, whether tracked files
  were changed (``dirty``), the untracked files' count, and when dirty the ``git diff
  HEAD`` saved beside the run (``.RUN.diff``, at most :data:`MAX_DIFF_BYTES`; its full size
  and SHA-256 are recorded either way). Outside a repository: ``{"error": "not a git
  repository: FOLDER"}``; without git: ``{"error": "git not found"}``.
- ``command``: ``sys.argv`` as the script got it, and the current folder.
- ``python``, ``platform``, ``packages``: versions of cs336_basics, numpy, torch and wandb.
  torch is never imported for this: when the script imported it, its version and CUDA
  version come from the module; otherwise its version comes from the installed package's
  metadata (no import) and CUDA is left out. wandb's version always comes from metadata.
- ``host`` and ``gpus``: the host name and the GPU names, from ``nvidia-smi`` when it is
  installed (no CUDA context is created), else from ``torch.cuda`` only when the script
  has initialised CUDA already; else none.
- ``data``: for each file the script names (``ExperimentTracker(data_files={"train":
  path})``): its absolute path, size, modification time and a fingerprint, the SHA-256 of
  the size and of the first, middle and last MiB of the file (the whole file when it is
  3 MiB or smaller): three reads whatever its size, so a 100 GB token file costs
  milliseconds, and any change of size or of those regions changes it.

No environment variable's value is read or stored here (tokens and keys live there): the
command line and file paths are what the script was given. Anything that fails is recorded
as an ``error`` string in its place; nothing here raises into the tracker.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

#: Bytes of the code diff saved beside a run; the rest is counted and hashed, not kept.
MAX_DIFF_BYTES = 1 << 20
#: Bytes of a diff read at most (a tree with huge generated files); past it, not counted.
_MAX_DIFF_READ = 64 << 20
#: Bytes of each region of a data file that its fingerprint reads.
SAMPLE_BYTES = 1 << 20
FINGERPRINT_METHOD = "sha256 of the size and the first, middle and last MiB"
_TIMEOUT_S = 10.0
#: What ``git`` runs with besides the caller's environment (no optional index writes, C
#: messages). The environment is passed on to git as it is, never read here.
_GIT_SETTINGS = {"GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


def code_folder(argv0: str | None = None) -> Path:
    """The folder whose git repository describes the code: the script's, else the current."""
    script = sys.argv[0] if argv0 is None else argv0
    try:
        path = Path(script).resolve()
    except (OSError, RuntimeError, ValueError):
        return Path.cwd()
    if not script or not path.is_file():
        return Path.cwd()
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    if any(root in path.parents for root in installed):
        return Path.cwd()  # pytest, or `python -m` of an installed module
    return path.parent


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        timeout=_TIMEOUT_S,
        env={**os.environ, **_GIT_SETTINGS},
        stdin=subprocess.DEVNULL,
    )


def _read_diff(folder: Path) -> tuple[bytes, int, str, bool]:
    """``git diff HEAD`` of tracked files: (its first MAX_DIFF_BYTES, bytes read, SHA-256 of
    what was read, whether the read stopped at _MAX_DIFF_READ)."""
    digest = hashlib.sha256()
    kept = bytearray()
    total = 0
    with subprocess.Popen(
        ["git", "-C", str(folder), "diff", "HEAD", "--no-color", "--no-ext-diff"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **_GIT_SETTINGS},
    ) as proc:
        assert proc.stdout is not None
        cut = False
        while chunk := proc.stdout.read(1 << 16):
            digest.update(chunk)
            total += len(chunk)
            if len(kept) < MAX_DIFF_BYTES:
                kept += chunk[: MAX_DIFF_BYTES - len(kept)]
            if total >= _MAX_DIFF_READ:
                cut = True
                proc.kill()
                break
        try:
            proc.wait(_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    return bytes(kept), total, digest.hexdigest(), cut


def git_state(folder: Path) -> tuple[dict[str, Any], bytes | None]:
    """The ``git`` object and, when tracked files changed, the (capped) diff to save."""
    if shutil.which("git") is None:
        return {"error": "git not found"}, None
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        return {"error": f"not a git repository: {folder}"}, None
    state: dict[str, Any] = {"repository": top.stdout.decode("utf-8", "replace").strip()}
    head = _git(folder, "rev-parse", "--verify", "-q", "HEAD")
    state["commit"] = head.stdout.decode().strip() if head.returncode == 0 else None
    branch = _git(folder, "symbolic-ref", "-q", "--short", "HEAD")
    state["branch"] = branch.stdout.decode("utf-8", "replace").strip() or None
    status = _git(folder, "status", "--porcelain=v1", "-z", "--untracked-files=normal")
    entries = [e for e in status.stdout.split(b"\0") if e]
    untracked = sum(1 for e in entries if e.startswith(b"??"))
    state["dirty"] = len(entries) > untracked
    state["untracked_files"] = untracked
    if not state["dirty"] or state["commit"] is None:
        return state, None
    diff, total, sha, cut = _read_diff(folder)
    state["diff_bytes"] = total
    state["diff_sha256"] = sha
    state["diff_truncated"] = total > len(diff)
    if cut:
        state["diff_read_stopped_at"] = total
    return state, diff


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
    except Exception:  # a broken installation
        return None


def packages() -> dict[str, Any]:
    """Versions, without importing anything that is not imported yet (see the module doc)."""
    out: dict[str, Any] = {
        "cs336_basics": getattr(sys.modules.get("cs336_basics"), "__version__", None),
        "numpy": _version("numpy"),
        "wandb": _version("wandb"),
    }
    torch = sys.modules.get("torch")
    version = getattr(torch, "__version__", None) if torch is not None else None
    if version is not None:
        out["torch"] = str(version)
        torch_version = getattr(torch, "version", None)
        out["cuda"] = getattr(torch_version, "cuda", None)
        out["torch_from"] = "imported"
    else:
        out["torch"] = _version("torch")
        out["torch_from"] = "package metadata (torch not imported: CUDA not asked)"
    return out


def gpu_names() -> tuple[list[str], str | None]:
    """GPU names and where they came from (no CUDA context is ever created here)."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            proc = subprocess.run(
                [smi, "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                timeout=_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
            if proc.returncode == 0:
                names = [line.strip() for line in proc.stdout.decode().splitlines()]
                return [n for n in names if n], "nvidia-smi"
        except (OSError, subprocess.TimeoutExpired):
            pass
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    try:
        if cuda is not None and cuda.is_initialized():
            count = cuda.device_count()
            return [cuda.get_device_name(i) for i in range(count)], "torch.cuda"
    except Exception:
        pass
    return [], None


def fingerprint(path: str | Path) -> dict[str, Any]:
    """A data file's path, size, modification time and sampled fingerprint (module doc)."""
    target = Path(path)
    out: dict[str, Any] = {"path": str(target.absolute())}
    try:
        with open(target, "rb") as handle:
            st = os.fstat(handle.fileno())
            size = st.st_size
            digest = hashlib.sha256(size.to_bytes(8, "little"))
            if size <= 3 * SAMPLE_BYTES:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            else:
                for start in (0, size // 2 - SAMPLE_BYTES // 2, size - SAMPLE_BYTES):
                    handle.seek(start)
                    digest.update(handle.read(SAMPLE_BYTES))
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
        return out
    out["size"] = size
    out["modified"] = datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds")
    out["fingerprint"] = "sha256:" + digest.hexdigest()
    out["method"] = FINGERPRINT_METHOD
    return out


def collect(
    data_files: Mapping[str, str | Path] | None = None, folder: Path | None = None
) -> tuple[dict[str, Any], bytes | None]:
    """The ``provenance`` object, and the code diff to save beside the run (or None)."""
    record: dict[str, Any] = {"recorded_at": datetime.now().isoformat(timespec="seconds")}
    record["command"] = list(sys.argv)
    record["cwd"] = os.getcwd()
    diff: bytes | None = None
    try:
        record["git"], diff = git_state(folder or code_folder())
    except (OSError, subprocess.SubprocessError) as exc:
        record["git"] = {"error": f"{type(exc).__name__}: {exc}"}
    record["python"] = platform.python_version()
    record["platform"] = platform.platform()
    record["packages"] = packages()
    record["host"] = socket.gethostname()
    gpus, source = gpu_names()
    record["gpus"] = gpus
    record["gpus_from"] = source
    if data_files:
        record["data"] = {str(name): fingerprint(path) for name, path in data_files.items()}
    return record, diff


def resume_entry(record: dict[str, Any]) -> dict[str, Any]:
    """What a resume adds to an existing provenance: when, the command, the code's state."""
    git = record.get("git") or {}
    code = {k: git.get(k) for k in ("commit", "branch", "dirty", "diff_sha256", "error")}
    entry: dict[str, Any] = {
        "recorded_at": record.get("recorded_at"),
        "command": record.get("command"),
        "host": record.get("host"),
        "git": {k: v for k, v in code.items() if v is not None},
    }
    if "data" in record:
        entry["data"] = record["data"]
    return entry
