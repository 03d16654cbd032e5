"""Turning what a training loop passes as a metric into a float (pure functions).

Accepted: ``int``, ``float``, numpy scalars, 0-d numpy arrays and torch tensors, anything
``float()`` takes except strings, bools and complex numbers. Rejected with ``TypeError`` naming
the argument: strings, bools (``numpy.bool_`` too), complex numbers, ``None`` where a number is
required, lists, and any array or tensor with a dimension (``ndim > 0``, one element or many:
numpy and torch alike; the message says to pass ``x.squeeze()`` or ``x.reshape(())``, which
keep a GPU tensor on its device); with ``ValueError``: an integer too large
for a float (``10**400``). Iterations and steps are integers from 0 to :data:`MAX_INDEX`
(2**53 - 1: exact as a float, as plots, pandas and a browser's ``JSON.parse`` need).

Non-finite floats are returned as :class:`NonFinite`, a ``float`` subclass that behaves exactly
like the float it wraps; the JSON encoder recognises it and writes a string marker, so finite
values take the encoder's fast path and a diverged run still round-trips as NaN/inf.

A tensor that lives on an accelerator is returned as is (see :func:`is_device_tensor`): reading
it would force a host sync, so the tracker converts such values in batches.

Values other tools logged (W&B rows, the drop-in) are read leniently by :func:`as_number` and
:func:`as_index`: what is not a number is None, never an error. Names and texts that go
into a file pass :func:`check_text` (valid UTF-8).
"""

from __future__ import annotations

import math
from typing import Any


class NonFinite(float):
    """A NaN or +-inf value; a float in every respect, marked for the encoder."""

    __slots__ = ()

    def __repr__(self) -> str:
        return float.__repr__(self)


NAN_MARKER = "NaN"
POS_INF_MARKER = "Infinity"
NEG_INF_MARKER = "-Infinity"
MARKERS = {NAN_MARKER: math.nan, POS_INF_MARKER: math.inf, NEG_INF_MARKER: -math.inf}
#: The largest iteration or step number accepted (2**53 - 1).
MAX_INDEX = 2**53 - 1


def marker_for(value: float) -> str:
    """The JSON string marker for a non-finite float."""
    if value != value:
        return NAN_MARKER
    return POS_INF_MARKER if value > 0 else NEG_INF_MARKER


def json_number(value: Any) -> Any:
    """``value`` as strict JSON can carry it: a non-finite float as its marker
    (:func:`marker_for`), anything else unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return marker_for(value)
    return value


def from_marker(value: Any) -> Any:
    """Undo :func:`marker_for`; any other value passes through unchanged."""
    if type(value) is str and value in MARKERS:
        return NonFinite(MARKERS[value])
    return value


def wrap_float(value: float) -> float:
    """Return ``value`` as a plain float, or as :class:`NonFinite` when it is NaN or +-inf."""
    if value - value == 0.0:
        return value
    return NonFinite(value)


def is_device_tensor(value: Any) -> bool:
    """True for a torch tensor that is not on the CPU (reading it would sync the device)."""
    device = getattr(value, "device", None)
    return (
        device is not None
        and type(value).__module__.startswith("torch")
        and getattr(device, "type", "cpu") != "cpu"
    )


def check_text(what: str, value: Any) -> str:
    """Refuse a name or text that a JSON document cannot hold: not a string (``TypeError``),
    or not valid UTF-8 (``ValueError``: a lone surrogate, as ``os.fsdecode`` gives for a
    file name that is not UTF-8)."""
    if type(value) is not str:
        if not isinstance(value, str):
            raise TypeError(f"{what}: expected a string, got {_describe(value)}")
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} {value!r:.80}: not valid UTF-8 text ({exc.reason} at index {exc.start}, "
            "as os.fsdecode gives for a name that is not UTF-8); use "
            "name.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace') or another name"
        ) from exc
    return value


#: The longest tag or group name accepted (W&B's limit for a tag).
MAX_TAG_CHARS = 64
MAX_GROUP_CHARS = 128


def check_tag(value: Any, what: str = "tag") -> str:
    """A tag as this package takes it: a string of 1 to 64 characters with no blank, comma
    or control character, not starting with ``+`` or ``-`` (``cs336-exp tag RUN +a -b``
    adds and removes with those). ``TypeError``/``ValueError`` naming the value."""
    check_text(what, value)
    problem = None
    if not value:
        problem = "is empty"
    elif len(value) > MAX_TAG_CHARS:
        problem = f"has {len(value)} characters (at most {MAX_TAG_CHARS})"
    elif any(c.isspace() for c in value):
        problem = "has a blank (use - or _ instead)"
    elif "," in value:
        problem = "has a comma"
    elif not value.isprintable():
        problem = "has a control character"
    elif value[0] in "+-":
        problem = "starts with + or - (they add and remove tags on the command line)"
    if problem is not None:
        raise ValueError(
            f"{what} {value!r:.80}: {problem}; expected 1-{MAX_TAG_CHARS} characters with no "
            "blank or comma, such as ablation or lr-sweep"
        )
    return value


def check_group(value: Any, what: str = "group") -> str:
    """A group name: 1 to 128 printable characters (blanks allowed), not only blanks."""
    check_text(what, value)
    if not value.strip() or len(value) > MAX_GROUP_CHARS or not value.isprintable():
        raise ValueError(
            f"{what} {value!r:.80}: expected 1-{MAX_GROUP_CHARS} printable characters, not "
            "only blanks"
        )
    return value


def as_number(value: Any) -> float | None:
    """A value another tool logged, as a float if it is a number (NaN and infinities kept,
    also spelled as strings: ``"NaN"``, ``"inf"``, ``"-Infinity"``), else None (strings,
    bools, media, containers). An integer too large for a float becomes +-inf, as W&B
    stores it. One rule for every reader of foreign values (W&B runs, the drop-in)."""
    kind = type(value)
    if kind is float:
        return value if value - value == 0.0 else NonFinite(value)
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            return NonFinite(math.inf if value > 0 else -math.inf)
    if value is None or isinstance(value, (bool, bytes, complex)) or _not_real(value):
        return None
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("nan", "infinity", "inf", "-infinity", "-inf", "+inf", "+infinity"):
            return wrap_float(float(lowered.replace("infinity", "inf")))
        return None
    size = getattr(value, "size", None)
    numel = getattr(value, "numel", None)
    count = numel() if callable(numel) else size if isinstance(size, int) else 1
    if count != 1 or not hasattr(value, "__float__"):
        return None
    try:
        return wrap_float(float(value))
    except OverflowError:
        return NonFinite(math.inf if int(value) > 0 else -math.inf)
    except (TypeError, ValueError):
        return None


def as_index(value: Any) -> int | None:
    """A value another tool logged as a step or iteration: a finite number from 0 to
    :data:`MAX_INDEX` (a fraction is cut to its whole part), else None."""
    number = as_number(value)
    if number is None or not math.isfinite(number) or not 0 <= number <= MAX_INDEX:
        return None
    return int(number)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} of type {type(value).__name__}"


def _not_real(value: Any) -> str | None:
    """'bool' or 'complex' for a numpy/torch boolean or complex value, else None."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return None
    kind = getattr(dtype, "kind", None)  # numpy's dtype.kind; torch dtypes have none
    if kind == "b" or str(dtype) == "torch.bool":
        return "bool"
    if kind == "c" or getattr(dtype, "is_complex", False) is True:
        return "complex"
    return None


def to_float(name: str, value: Any, *, allow_device: bool = False) -> Any:
    """Validate one metric value and return it as a float.

    ``name`` is the argument's name, used in the error message. With ``allow_device`` a
    0-d accelerator tensor is returned unconverted (the caller converts it later).
    """
    kind = type(value)
    if kind is float:
        return value if value - value == 0.0 else NonFinite(value)
    if kind is int and -(2**53) <= value <= 2**53:
        return float(value)
    if value is None:
        raise TypeError(f"{name}: expected a number, got None")
    if isinstance(value, (str, bytes, bool, complex)) or kind in (list, tuple, dict, set):
        raise TypeError(f"{name}: expected a real number, got {_describe(value)}")
    if isinstance(value, int):  # an int subclass, or an int too large for a float
        try:
            return wrap_float(float(value))
        except OverflowError as exc:
            raise ValueError(
                f"{name}: expected a number that fits in a 64-bit float, got an integer of "
                f"{int(value).bit_length()} bits"
            ) from exc
    not_real = _not_real(value)
    if not_real is not None:
        raise TypeError(f"{name}: expected a real number, got a {not_real} {_describe(value)}")
    size = getattr(value, "size", None)
    numel = getattr(value, "numel", None)
    count = numel() if callable(numel) else size if isinstance(size, int) else 1
    if count != 1:
        raise TypeError(
            f"{name}: expected a single number, got {_describe(value)} with {count} elements"
        )
    ndim = getattr(value, "ndim", 0)
    if isinstance(ndim, int) and ndim > 0:
        shape = tuple(getattr(value, "shape", ()))
        raise TypeError(
            f"{name}: expected a single number (0-d), got {_describe(value)} of shape {shape}; "
            "pass value.squeeze() or value.reshape(()) (or float(value.item()))"
        )
    if allow_device and is_device_tensor(value):
        return value
    try:
        result = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a number, got {_describe(value)}") from exc
    except OverflowError as exc:
        raise ValueError(
            f"{name}: expected a number that fits in a 64-bit float, got {_describe(value)}"
        ) from exc
    return wrap_float(result)


def optional_float(name: str, value: Any, *, allow_device: bool = False) -> Any:
    """Like :func:`to_float` but ``None`` means "not measured" and is kept."""
    if value is None:
        return None
    return to_float(name, value, allow_device=allow_device)


def to_int(name: str, value: Any) -> int:
    """Validate an iteration or step number: an integer from 0 to :data:`MAX_INDEX`
    (numpy ints accepted)."""
    if type(value) is int and 0 <= value <= MAX_INDEX:
        return value
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes, float)):
        raise TypeError(f"{name}: expected a non-negative integer, got {_describe(value)}")
    try:
        index = value.__index__()
    except (AttributeError, TypeError) as exc:
        raise TypeError(f"{name}: expected a non-negative integer, got {_describe(value)}") from exc
    if not 0 <= index <= MAX_INDEX:
        shown = index if abs(index) < 10**20 else f"an integer of {index.bit_length()} bits"
        raise ValueError(f"{name}: expected an integer from 0 to 2**53 - 1, got {shown}")
    return int(index)
