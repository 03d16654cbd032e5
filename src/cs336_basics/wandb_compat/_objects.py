"""The small objects a W&B script touches: ``Config``, ``Summary``, ``Settings``, media.

``Config`` is a dict with attribute access whose every change is reported to its run.
``Summary`` reads like W&B's (the last logged value of each key, or the ``define_metric``
aggregate, unless set explicitly); what the script sets is reported to its run too. Media,
tables and artifacts are placeholders: building and using one is allowed (an artifact's
``new_file`` is a file that goes nowhere), logging one is said once on the ``cs336_basics``
logger (see :func:`note_once`): never an exception or a warning raised into a training loop,
whatever the ``warnings`` filters say.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

logger = logging.getLogger("cs336_basics")
_warned: set[tuple[str, str]] = set()


def note_once(call: str, subject: str, message: str) -> None:
    """Say once per (call, subject) in this process, on the ``cs336_basics`` logger, that a
    call or value has no local meaning. A W&B script does this in normal use (an image, a
    ``watch``): it is never an error, and never a warning a filter could turn into one."""
    if (call, subject) in _warned:
        return
    _warned.add((call, subject))
    logger.warning("wandb drop-in: %s: %s", call, message)


class Config(dict[str, Any]):
    """``run.config``: ``config["lr"]``, ``config.lr``, ``config.update({...})``."""

    def __init__(self, on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_on_change", on_change)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delattr__(self, name: str) -> None:
        raise TypeError("config: keys cannot be removed (W&B does not allow it either)")

    def update(self, *args: Any, allow_val_change: bool | None = None, **kwargs: Any) -> None:
        data: dict[str, Any] = {}
        for arg in args:
            data.update(as_dict(arg))
        data.update(kwargs)
        if not data:
            return
        for key in data:
            if not isinstance(key, str):
                raise TypeError(f"config key {key!r}: expected a string")
        super().update(data)
        if self._on_change is not None:
            self._on_change(data)

    def setdefaults(self, data: Any) -> None:
        """Set the keys of ``data`` that are not set yet (W&B's ``config.setdefaults``)."""
        self.update({k: v for k, v in as_dict(data).items() if k not in self})

    def as_dict(self) -> dict[str, Any]:
        return dict(self)

    def __repr__(self) -> str:
        return f"Config({dict.__repr__(self)})"


def as_dict(value: Any) -> dict[str, Any]:
    """A config given as a dict, an ``argparse.Namespace`` or any object with ``__dict__``."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    raise TypeError(f"config: expected a dict or an argparse.Namespace, got {type(value).__name__}")


_AGGREGATES = ("min", "max", "mean", "last", "first", "best", "none", "copy")


class Summary(MutableMapping[str, Any]):
    """``run.summary``: explicit values win; otherwise the aggregate ``define_metric`` asked
    for (``min``, ``max``, ``mean``, ``first``, ``last``), else the last value logged."""

    def __init__(self) -> None:
        self._set: dict[str, Any] = {}
        self._on_set: Callable[[str, Any], None] | None = None
        self._last: dict[str, Any] = {}
        self._rules: list[tuple[str, tuple[str, ...]]] = []
        self._stats: dict[str, dict[str, float]] = {}

    def add_rule(self, pattern: str, summary: str) -> None:
        ops = tuple(s.strip() for s in summary.split(",") if s.strip())
        bad = [op for op in ops if op not in _AGGREGATES]
        if bad:
            raise ValueError(
                f"define_metric(summary={summary!r}): expected some of {', '.join(_AGGREGATES)}"
            )
        self._rules.append((pattern, ops))

    def _ops(self, key: str) -> tuple[str, ...]:
        for pattern, ops in reversed(self._rules):
            if pattern == key or fnmatch.fnmatchcase(key, pattern):
                return ops
        return ()

    def observe(self, row: Mapping[str, float]) -> None:
        """A committed row's numbers (already floats)."""
        self._last.update(row)
        if not self._rules:
            return
        for key, value in row.items():
            if not self._ops(key) or math.isnan(value):
                continue
            stats = self._stats.setdefault(key, {"n": 0, "sum": 0.0, "first": value})
            stats["n"] += 1
            stats["sum"] += value
            stats["min"] = min(stats.get("min", value), value)
            stats["max"] = max(stats.get("max", value), value)

    def _derived(self, key: str) -> Any:
        ops = self._ops(key)
        stats = self._stats.get(key)
        if "none" in ops:
            raise KeyError(key)
        if ops and stats is not None:
            op = next((o for o in ops if o not in ("copy", "best")), "last")
            if op == "mean":
                return stats["sum"] / stats["n"]
            if op in ("min", "max", "first"):
                return stats[op]
        return self._last[key]

    def __getitem__(self, key: str) -> Any:
        if key in self._set:
            return self._set[key]
        return self._derived(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._set[key] = value
        if self._on_set is not None:
            self._on_set(key, value)

    def __delitem__(self, key: str) -> None:
        self._set.pop(key, None)
        self._last.pop(key, None)
        self._stats.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        keys = dict.fromkeys([*self._last, *self._set])
        return iter([k for k in keys if k in self._set or "none" not in self._ops(k)])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"summary has no key {name!r}") from None

    @property
    def explicit(self) -> dict[str, Any]:
        """The values set with ``summary[key] = value`` / ``summary.update``."""
        return dict(self._set)

    def __repr__(self) -> str:
        return f"Summary({dict(self.items())!r})"


class Settings:
    """``wandb.Settings(...)``: the keyword arguments are kept and given to the W&B mirror
    (``mode`` is honoured locally too)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


class Unsupported:
    """A placeholder for a W&B object the local log cannot hold (media, tables, artifacts)."""

    kind = "object"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        note_once(f"{self.kind}.{name}", "", f"{self.kind} objects have no local meaning; ignored")
        return lambda *args, **kwargs: None

    def __repr__(self) -> str:
        return f"<unsupported wandb.{self.kind}>"


class Artifact(Unsupported):
    """``wandb.Artifact``: files added to it go nowhere (said once); ``new_file`` gives a
    file to write, as the Hugging Face callback does, whose bytes are dropped."""

    kind = "Artifact"

    @contextlib.contextmanager
    def new_file(self, name: str, mode: str = "x", encoding: str | None = None) -> Iterator[Any]:
        note_once("Artifact.new_file", "", "artifacts are not kept locally; the file is dropped")
        yield io.BytesIO() if "b" in mode else io.StringIO()


def _placeholder(kind: str) -> type[Unsupported]:
    if kind == "Artifact":
        return Artifact
    return type(kind, (Unsupported,), {"kind": kind, "__module__": __name__})


MEDIA_TYPES = (
    "Image",
    "Audio",
    "Video",
    "Html",
    "Table",
    "Histogram",
    "Object3D",
    "Molecule",
    "Plotly",
    "Graph",
    "Artifact",
)
PLACEHOLDERS: dict[str, type[Unsupported]] = {name: _placeholder(name) for name in MEDIA_TYPES}
