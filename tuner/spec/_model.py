"""The study file as typed pydantic models.

The key names here are the public contract of a study file (README, "Study file reference").
Every model forbids unknown keys, so a typo is reported instead of silently ignored.
"""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_USER_OBJECTIVE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
MAX_INT_BOUND = 2**53


class _Strict(BaseModel):
    """Base for study-file sections: unknown keys are an error that lists the allowed ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            allowed = set(cls.model_fields)
            unknown = [str(k) for k in data if k not in allowed]
            if unknown:
                raise ValueError(
                    f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
                )
        return data


class ParamType(str, Enum):
    """How a search-space parameter is suggested to Optuna."""

    FLOAT = "float"
    INT = "int"
    CATEGORICAL = "categorical"


Scalar = bool | int | float | str | None


class ParamSpec(_Strict):
    """One search-space parameter.

    The type follows from the keys: ``choices`` makes it categorical, int bounds make it int,
    float bounds make it float; ``type`` may state it outright. ``when`` makes the parameter
    exist only when other parameters took one of the listed values.
    """

    type: ParamType | None = None
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Scalar] | None = None
    when: dict[str, list[Scalar]] | None = None

    @field_validator("low", "high", "step", mode="before")
    @classmethod
    def _reject_bool_bounds(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"must be a number, got {value!r}")
        if isinstance(value, int) and abs(value) > MAX_INT_BOUND:
            # Optuna keeps parameters as floats: larger integers lose precision or overflow.
            raise ValueError("must be between -2**53 and 2**53")
        return value

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        kind = self.kind
        if kind is ParamType.CATEGORICAL:
            if self.choices is None or len(self.choices) == 0:
                raise ValueError("choices must be a non-empty list")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("choices cannot be combined with low/high/step/log")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ValueError(f"choices must be distinct (got {self.choices})")
            return self
        if self.choices is not None:
            raise ValueError(f"type {kind.value} takes low/high, not choices")
        if self.low is None or self.high is None:
            raise ValueError("needs low and high (or choices for a categorical parameter)")
        for key in ("low", "high", "step"):
            value = getattr(self, key)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{key} must be finite (got {value})")
        if kind is ParamType.INT:
            for key in ("low", "high", "step"):
                value = getattr(self, key)
                if value is not None and not float(value).is_integer():
                    raise ValueError(f"type int needs integer {key} (got {value})")
        if not self.low < self.high:
            raise ValueError(f"low must be < high (got low={self.low}, high={self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got low={self.low})")
        if self.step is not None:
            if self.step <= 0:
                raise ValueError(f"step must be > 0 (got step={self.step})")
            if self.log:
                raise ValueError("step and log cannot be combined")
        if self.when is not None and not self.when:
            raise ValueError("when must name at least one parameter")
        return self

    @property
    def kind(self) -> ParamType:
        """The parameter's type, stated or inferred from its keys."""
        if self.type is not None:
            return self.type
        if self.choices is not None:
            return ParamType.CATEGORICAL
        bounds = [v for v in (self.low, self.high, self.step) if v is not None]
        if bounds and all(isinstance(v, int) for v in bounds):
            return ParamType.INT
        return ParamType.FLOAT


class CsvData(_Strict):
    """A user's own series for forecasting: one CSV column, windowed into look-back samples."""

    csv: str
    target: str
    look_back: int = Field(24, ge=1)
    horizon: int = Field(1, ge=1)


class ObjectiveSpec(BaseModel):
    """What is trained and scored.

    ``model`` is a built-in (``lstm``, ``cnn``) or ``package.module:function``. Keys beyond the
    declared ones are fixed settings of the built-in model (``batch_size``, ``optimizer``, ...);
    the built-in objective checks their names, and any of them may move into ``search_space``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    model: str
    task: Literal["classification", "forecasting"] | None = None
    dataset: str | CsvData | None = None
    metric: str | None = None
    direction: Literal["minimize", "maximize"] | None = None
    epochs: int = Field(20, ge=1, le=100_000)

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if ":" in value and not _USER_OBJECTIVE_RE.match(value):
            raise ValueError(
                f"a user objective is written 'package.module:function' (got {value!r})"
            )
        return value

    @property
    def is_user_function(self) -> bool:
        """True when the objective is the user's own ``module:function``."""
        return ":" in self.model

    @property
    def settings(self) -> dict[str, Any]:
        """The fixed settings given beside the declared keys."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _user_objective_takes_no_settings(self) -> ObjectiveSpec:
        if self.is_user_function and self.settings:
            key = next(iter(self.settings))
            raise ValueError(
                f"unknown key {key!r} for a user objective; allowed: model, task, dataset, "
                "metric, direction, epochs (put other values in search_space)"
            )
        return self


class SamplerSpec(BaseModel):
    """Optuna sampler by short name; other keys are passed to its constructor."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["tpe", "random", "cmaes", "gp", "qmc", "grid"] = "tpe"
    seed: int | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PrunerSpec(BaseModel):
    """Optuna pruner by short name; other keys are passed to its constructor."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["none", "median", "percentile", "successive_halving", "hyperband", "wilcoxon"] = (
        "none"
    )

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BudgetSpec(_Strict):
    """How much the study may spend, counted over the whole fleet.

    ``n_trials`` counts finished trials (complete, pruned, failed for good); ``timeout`` is
    wall-clock seconds since the study first started.
    """

    n_trials: int | None = Field(None, ge=1, le=10_000_000)
    timeout: float | None = Field(None, gt=0)
    max_retries: int = Field(2, ge=0, le=100)
    failure_window: int = Field(10, ge=1)
    max_failed_share: float = Field(0.8, gt=0, le=1)

    @model_validator(mode="after")
    def _needs_a_limit(self) -> BudgetSpec:
        if self.n_trials is None and self.timeout is None:
            raise ValueError("needs n_trials, timeout or both")
        return self


class WorkersSpec(_Strict):
    """How many local worker processes ``tuner launch`` starts, and how they keep alive."""

    per_gpu: int = Field(1, ge=1, le=64)
    cpu: int = Field(1, ge=1, le=256)
    heartbeat_interval: float = Field(5.0, gt=0, le=3600)
    heartbeat_grace: float = Field(30.0, gt=0)
    stop_grace: float = Field(3.0, ge=0, le=60)

    @model_validator(mode="after")
    def _grace_exceeds_interval(self) -> WorkersSpec:
        if self.heartbeat_grace <= self.heartbeat_interval:
            raise ValueError(
                "heartbeat_grace must be > heartbeat_interval "
                f"(got {self.heartbeat_grace} <= {self.heartbeat_interval})"
            )
        return self


class StudySpec(_Strict):
    """A whole study file."""

    name: str
    storage: str | None = None
    objective: ObjectiveSpec
    search_space: dict[str, ParamSpec] = Field(default_factory=dict)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    budget: BudgetSpec
    workers: WorkersSpec = Field(default_factory=WorkersSpec)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or "
                f"digit (got {value!r})"
            )
        return value

    @model_validator(mode="after")
    def _check_conditions(self) -> StudySpec:
        from tuner.spec._space import check_conditions

        check_conditions(self.search_space)
        return self

    @property
    def direction(self) -> str:
        """The optimisation direction, defaulting from the metric's usual sense."""
        if self.objective.direction is not None:
            return self.objective.direction
        metric = (self.objective.metric or "").lower()
        return "maximize" if any(k in metric for k in ("acc", "f1", "auc", "r2")) else "minimize"
