"""Reading and writing files safely: atomic replacement, regular files only, small JSON state.

Writes go to a temporary file (``layout.temp_path``) that is fsynced and renamed over the
target, so a crash leaves the old file or the new one, never a torn one. Reads accept only
regular files (a FIFO or a device named like a run's file would block or never end) and
report a file that cannot be read as :class:`LogFormatError` naming it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ..core.errors import LogFormatError
from .codec import dumps
from .layout import temp_path

# ---------------------------------------------------------------------------------------
# Reading files safely.


def open_regular(path: Path) -> int:
    """A read-only descriptor of ``path``, refusing what is not a regular file (a FIFO is
    opened without blocking and refused): ``LogFormatError``; ``FileNotFoundError`` as is."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise LogFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a device"
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a directory"
                if stat.S_ISDIR(mode)
                else "not a regular file"
            )
            raise LogFormatError(f"{path}: {kind}, not a run's file (skipped)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file and its stat when opened (see :func:`open_regular`)."""
    fd = open_regular(path)
    try:
        before = os.fstat(fd)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read()
    except OSError as exc:
        raise LogFormatError(f"{path}: cannot read ({exc})") from exc
    finally:
        os.close(fd)
    return data, before


def read_bytes_if_any(path: Path) -> bytes | None:
    """The bytes of a regular file, or None when it does not exist."""
    try:
        return read_file(path)[0]
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------------------
# Writing.


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path, durable: bool = True, per_thread: bool = True) -> Iterator[BinaryIO]:
    """A file to write that replaces ``path`` when the block ends: written to a temporary
    name (``layout.temp_path``), fsynced (``durable``), renamed over ``path``; removed if the
    block raises. A crash leaves the old file or the new one, never a torn one."""
    tmp = temp_path(path, per_thread=per_thread)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | Iterable[bytes]) -> os.stat_result:
    """Write ``data`` (bytes, or pieces of them written one after another) to ``path`` with
    :func:`atomic_file`; returns the new file's stat (taken after the rename, which changes
    the file's ctime on some file systems)."""
    with atomic_file(path) as handle:
        if isinstance(data, bytes):
            handle.write(data)
        else:
            for piece in data:
                handle.write(piece)
    return os.stat(path)


# ---------------------------------------------------------------------------------------
# Small state files (a mirror process's state): one JSON object, written atomically.


def read_state(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or ``{}`` (none yet, or unreadable)."""
    try:
        data = orjson.loads(read_file(path)[0])
    except (OSError, LogFormatError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, dumps(state))
