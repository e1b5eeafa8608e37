"""Every setting a built-in objective understands: its default, its allowed values, its owner.

This table is the single source for the defaults a trial starts from, for the names
``check_builtin`` accepts, and for the reference in docs/OBJECTIVES.md. A trial's values are
``defaults <- objective settings <- sampled search_space`` (later wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BOTH = ("lstm", "cnn")
TASKS = ("classification", "forecasting")


@dataclass(frozen=True)
class Setting:
    """One setting. ``kind`` is bool, int, float or choice; numbers must lie in [low, high]
    (``high_open``: strictly below ``high``; ``low_open``: strictly above ``low``)."""

    name: str
    default: Any
    kind: str
    help: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    models: tuple[str, ...] = BOTH
    tasks: tuple[str, ...] = TASKS
    searchable: bool = True
    nullable: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed for this setting, or ``None`` when it is fine."""
        if value is None and self.nullable:
            return None
        if self.kind == "choice":
            if value not in self.choices or isinstance(value, bool) != isinstance(
                self.choices[0], bool
            ):
                return f"{value!r} is not one of {list(self.choices)}"
            return None
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"must be true or false (got {value!r})"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number (got {value!r})"
        if self.kind == "int" and not float(value).is_integer():
            return f"must be an integer (got {value!r})"
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return f"must be {'>' if self.low_open else '>='} {_number(self.low)} (got {value!r})"
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return f"must be {'<' if self.high_open else '<='} {_number(self.high)} (got {value!r})"
        return None

    def describe(self) -> str:
        """Allowed values in words, for error messages and the docs."""
        if self.kind == "choice":
            return " | ".join(str(c) for c in self.choices)
        if self.kind == "bool":
            return "true | false"
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        return f"{self.kind} in {lo}{low}, {high}{hi}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _s(*args: Any, **kwargs: Any) -> Setting:
    return Setting(*args, **kwargs)


SETTINGS: tuple[Setting, ...] = (
    # optimisation
    _s("lr", 1e-3, "float", "learning rate", low=0, low_open=True, high=10),
    _s("optimizer", "adam", "choice", "optimiser", choices=("adam", "adamw", "sgd")),
    _s("momentum", 0.9, "float", "SGD momentum (sgd only)", low=0, high=1, high_open=True),
    _s("weight_decay", 0.0, "float", "L2 penalty (decoupled for adamw)", low=0, high=1),
    _s("batch_size", 64, "int", "samples per step", low=2, high=65536),
    _s("grad_clip", 1.0, "float", "max gradient norm; 0 turns clipping off", low=0),
    _s(
        "scheduler",
        "none",
        "choice",
        "learning-rate schedule, stepped once per epoch",
        choices=("none", "plateau", "cosine"),
    ),
    _s(
        "plateau_factor",
        0.5,
        "float",
        "plateau: lr multiplier on a plateau",
        low=0,
        low_open=True,
        high=1,
        high_open=True,
    ),
    _s(
        "plateau_patience",
        3,
        "int",
        "plateau: epochs without improvement before a cut",
        low=0,
        high=10_000,
    ),
    _s(
        "patience",
        10,
        "int",
        "early stopping: epochs without improvement; 0 turns it off",
        low=0,
        high=100_000,
    ),
    _s("amp", True, "bool", "mixed precision (float16 autocast + GradScaler); GPU only"),
    _s(
        "seed",
        None,
        "int",
        "fixed seed; default: sampler seed + trial number",
        low=0,
        high=2**31 - 1,
        searchable=False,
        nullable=True,
    ),
    _s(
        "refit",
        True,
        "bool",
        "retrain the best configuration on the whole training split before its test score",
        searchable=False,
    ),
    # data
    _s(
        "val_fraction",
        0.2,
        "float",
        "share of the training split held out for validation",
        low=0.05,
        high=0.5,
        searchable=False,
    ),
    _s(
        "test_fraction",
        0.2,
        "float",
        "forecasting: share of the series' end kept for test",
        low=0.05,
        high=0.5,
        tasks=("forecasting",),
        searchable=False,
    ),
    _s(
        "look_back",
        24,
        "int",
        "forecasting: input window length",
        low=1,
        high=100_000,
        tasks=("forecasting",),
    ),
    _s(
        "horizon",
        1,
        "int",
        "forecasting: steps predicted per window",
        low=1,
        high=10_000,
        tasks=("forecasting",),
    ),
    # both models
    _s("dropout", 0.0, "float", "dropout rate", low=0, high=1, high_open=True),
    _s("num_layers", 2, "int", "stacked LSTM layers", low=1, high=32, models=("lstm",)),
    _s("num_layers", 3, "int", "conv blocks", low=1, high=32, models=("cnn",)),
    _s("residual", False, "bool", "residual connections between layers / around blocks"),
    # LSTM
    _s(
        "hidden_size",
        64,
        "int",
        "LSTM hidden units per direction",
        low=1,
        high=8192,
        models=("lstm",),
    ),
    _s("bidirectional", False, "bool", "run a backward LSTM too", models=("lstm",)),
    _s(
        "pooling",
        "last",
        "choice",
        "LSTM: how the output sequence becomes one vector",
        choices=("last", "mean", "attention"),
        models=("lstm",),
    ),
    _s(
        "norm",
        "none",
        "choice",
        "normalisation layer",
        choices=("none", "layernorm", "batchnorm"),
        models=("lstm",),
    ),
    _s(
        "norm_placement",
        "between",
        "choice",
        "LSTM: where the norm sits",
        choices=("input", "between", "output"),
        models=("lstm",),
    ),
    # CNN
    _s("channels", 64, "int", "filters per conv block", low=1, high=4096, models=("cnn",)),
    _s(
        "kernel_size",
        3,
        "int",
        "conv kernel size ('same' padding)",
        low=1,
        high=512,
        models=("cnn",),
    ),
    _s(
        "pooling",
        "max",
        "choice",
        "CNN: downsampling by 2 after each block, or none",
        choices=("max", "avg", "none"),
        models=("cnn",),
    ),
    _s(
        "norm",
        "batchnorm",
        "choice",
        "normalisation layer",
        choices=("none", "batchnorm", "layernorm"),
        models=("cnn",),
    ),
    _s(
        "norm_placement",
        "before_activation",
        "choice",
        "CNN: norm before or after the ReLU",
        choices=("before_activation", "after_activation"),
        models=("cnn",),
    ),
    _s(
        "conv_dims",
        None,
        "choice",
        "1-D or 2-D convolution; default: 2 for digits, else 1",
        choices=(1, 2),
        models=("cnn",),
        searchable=False,
        nullable=True,
    ),
)

# keys of the study file's objective section that are not settings
OBJECTIVE_FIELDS = ("model", "task", "dataset", "metric", "direction", "epochs")

METRICS: dict[str, dict[str, str]] = {
    "classification": {"val_accuracy": "maximize", "val_loss": "minimize"},
    "forecasting": {"val_mse": "minimize", "val_mae": "minimize", "val_rmse": "minimize"},
}


def settings_for(model: str, task: str) -> dict[str, Setting]:
    """The settings that apply to ``model`` on ``task``, by name."""
    return {s.name: s for s in SETTINGS if model in s.models and task in s.tasks}


def defaults(model: str, task: str) -> dict[str, Any]:
    """Default values of every setting of ``model`` on ``task``."""
    return {name: s.default for name, s in settings_for(model, task).items()}
