"""``ExperimentConfig``: the hyperparameters of one run.

The guide's named fields each have a documented default. A script that builds its config
from another tool's settings (the W&B drop-in, a W&B run pulled or imported) uses
:meth:`ExperimentConfig.only`: the named fields it does not give are ``None`` ("not set"),
so no default is ever recorded, shown or computed with as if the script had chosen it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

_RESERVED_EXTRA = (
    "'extra' cannot be a hyperparameter's name (ExperimentConfig.extra is the dict of "
    "extra hyperparameters); rename it"
)


def _extra_hyperparameters(extra: Any) -> dict[str, Any]:
    """Check ``ExperimentConfig(extra=...)``: a dict of new names; returns a copy."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise TypeError(
            f"extra: expected a dict of extra hyperparameters, got {type(extra).__name__}"
        )
    not_str = [key for key in extra if not isinstance(key, str)]
    if not_str:
        raise TypeError(
            f"extra: hyperparameter names must be strings, got {', '.join(map(repr, not_str))}"
        )
    if "extra" in extra:
        raise ValueError(f"extra hyperparameter 'extra': {_RESERVED_EXTRA}")
    for key, value in extra.items():
        if key in NAMED_FIELDS:
            raise ValueError(
                f"extra hyperparameter {key!r} is a named field of ExperimentConfig; pass it "
                f"as the argument {key}={value!r:.40} instead of in extra="
            )
    return dict(extra)


@dataclass
class ExperimentConfig:
    """Hyperparameters of one run.

    Every field has a default. Keyword arguments the class does not name (``norm="post"``,
    ``ffn_type="silu"``) are kept in ``extra``, readable as attributes, saved into the JSON
    ``config`` object beside the named fields and loaded back. ``extra=`` takes such
    hyperparameters as a dict too; what could not be saved and loaded back is refused: a
    non-string name (``TypeError``), a named field (``extra={"d_model": 1024}``: pass
    ``d_model=1024``), a hyperparameter called ``extra``, or one given twice (``ValueError``).

    ``batch_size`` is the number of sequences per optimizer step (with gradient
    accumulation: micro-batch x accumulation steps x data-parallel ranks); tokens per step
    are ``batch_size x context_length``. A named field may be ``None``: "not set" (see
    :meth:`only`).
    """

    experiment_name: str = "default_experiment"
    vocab_size: int = 10000
    context_length: int = 256
    d_model: int = 512
    num_heads: int = 16
    d_ff: int = 1344
    num_layers: int = 4
    rope_theta: float = 10000.0
    batch_size: int = 64
    max_iters: int = 5000
    max_learning_rate: float = 6e-4
    min_learning_rate: float = 6e-5
    warmup_iters: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    seed: int = 42
    device: str = "cpu"
    optimizer_name: str = "AdamW"
    extra: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **kwargs: Any) -> None:
        extra = _extra_hyperparameters(kwargs.pop("extra", None))
        for f in fields(self):
            if f.name == "extra":
                continue
            if f.name in kwargs:
                value = kwargs.pop(f.name)
            else:
                value = f.default
            object.__setattr__(self, f.name, value)
        twice = sorted(extra.keys() & kwargs.keys())
        if twice:
            raise ValueError(
                f"extra hyperparameter {twice[0]!r} is given twice, as a keyword argument "
                "and in extra=; pass it once"
            )
        extra.update(kwargs)
        object.__setattr__(self, "extra", extra)
        name = self.experiment_name
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"experiment_name: expected a non-empty string, got {name!r}")

    @classmethod
    def only(cls, **given: Any) -> ExperimentConfig:
        """A config holding only the settings given: every named field not given is
        ``None`` (not set; documents record it as ``null``), never its default. (The
        annotations give the guide's types; code reading a config built this way must
        expect ``None``.)"""
        unset = {name: None for name in NAMED_FIELDS if name not in given}
        unset.pop("experiment_name", None)
        return cls(**unset, **given)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: expose extra hyperparameters as attributes.
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """A flat dict: the named fields in order, then the extra hyperparameters."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def settings(self) -> dict[str, Any]:
        """:meth:`to_dict` without the fields that are not set (``None``)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Inverse of :meth:`to_dict`; unknown keys become extra hyperparameters.

        A nested ``"extra"`` object (not written by :meth:`to_dict`) is read as more extra
        hyperparameters; any other value under ``"extra"`` is refused, as the name is
        reserved.
        """
        if not isinstance(data, dict):
            raise TypeError(f"config: expected a JSON object, got {type(data).__name__}")
        kwargs = {str(k): v for k, v in data.items()}
        if "extra" in kwargs and not isinstance(kwargs["extra"], dict | None):
            raise ValueError(f"config key 'extra' = {kwargs['extra']!r:.40}: {_RESERVED_EXTRA}")
        return cls(**kwargs)

    def differences(self, other: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
        """Keys whose values differ, as ``{key: (self's, other's)}`` (experiment_name ignored)."""
        mine, theirs = self.to_dict(), other.to_dict()
        keys = [k for k in mine if k != "experiment_name"]
        keys += [k for k in theirs if k not in mine]
        return {k: (mine.get(k), theirs.get(k)) for k in keys if mine.get(k) != theirs.get(k)}


#: The named fields of ExperimentConfig (``extra`` included).
NAMED_FIELDS = frozenset(f.name for f in fields(ExperimentConfig))
#: The named fields whose default is a number (a value that is not one is kept apart by
#: readers of foreign configs, under ``wandb.<key>``).
NUMERIC_FIELDS = frozenset(
    f.name for f in fields(ExperimentConfig) if type(f.default) in (int, float)
)
#: Config keys a sweep adds to each trial's run, bookkeeping rather than hyperparameters
#: (a sweep table leaves them out of its parameter columns): the Optuna study and trial
#: number (``cs336_basics.sweep``), the W&B sweep of a run a sweep agent started.
OPTUNA_STUDY = "optuna_study"
OPTUNA_TRIAL = "optuna_trial"
WANDB_SWEEP = "wandb_sweep_id"
SWEEP_KEYS = frozenset({OPTUNA_STUDY, OPTUNA_TRIAL, WANDB_SWEEP})
