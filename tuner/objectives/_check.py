"""Validation of a study file that selects a built-in objective, before any trial runs.

Everything that would make a trial fail because of the study file (an unknown name, a value a
model cannot take, a combination of sampled values that cannot be built) is reported here as
one :class:`~tuner.errors.SpecError` naming the field, so a study never starts with a search
space that breaks half-way. Nothing here loads a data set; only names, file headers and series
lengths are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuner.errors import SpecError
from tuner.objectives._settings import METRICS, SETTINGS, Setting, settings_for
from tuner.objectives.data import DataKind, DatasetInfo, available, lookup
from tuner.spec import CsvData, ParamSpec, ParamType, StudySpec
from tuner.spec._space import sampling_order

MODELS = ("lstm", "cnn")
# settings whose combinations are checked over every way the search space can sample them
_COMBINED = (
    "norm",
    "norm_placement",
    "hidden_size",
    "bidirectional",
    "channels",
    "conv_dims",
    "look_back",
    "horizon",
)


def resolve_metric(spec: StudySpec) -> str:
    """The metric a built-in objective returns: the stated one, else the task's default that
    agrees with the study direction (classification: val_accuracy when maximising, else
    val_loss; forecasting: val_mse)."""
    metric = spec.objective.metric
    if metric is not None:
        return metric
    if spec.objective.task == "classification":
        return "val_accuracy" if spec.direction == "maximize" else "val_loss"
    return "val_mse"


def check_builtin(spec: StudySpec) -> None:
    """Raise :class:`SpecError` (``"objective.<key>: ..."`` / ``"search_space.<name>: ..."``)
    when the built-in objective of ``spec`` cannot run; return ``None`` when every trial the
    search space can produce builds and trains. User objectives (``module:function``) pass."""
    obj = spec.objective
    if obj.is_user_function:
        return
    if obj.model not in MODELS:
        raise SpecError(
            f"objective.model: unknown built-in model {obj.model!r}; built-ins: "
            f"{', '.join(MODELS)} (or 'package.module:function' for your own objective)"
        )
    if obj.task is None:
        raise SpecError(
            f"objective.task: model {obj.model} needs a task: classification or forecasting"
        )
    info = _check_dataset(obj.dataset, obj.task)
    _check_metric(spec)
    allowed = settings_for(obj.model, obj.task)
    what = f"model {obj.model}, task {obj.task}"
    for key, value in obj.settings.items():
        if key not in allowed:
            raise SpecError(
                f"objective.{key}: unknown setting for {what}; allowed: "
                f"{', '.join(sorted(allowed))}"
            )
        problem = allowed[key].problem(value)
        if problem:
            raise SpecError(f"objective.{key}: {problem}")
    searchable = sorted(["epochs", *(n for n, s in allowed.items() if s.searchable)])
    for name, param in spec.search_space.items():
        if name == "epochs":
            _check_param(Setting("epochs", 20, "int", "", low=1, high=100_000), name, param)
            continue
        if name not in allowed:
            hint = " (a fixed setting: put it under objective)" if _is_fixed(name) else ""
            raise SpecError(
                f"search_space.{name}: unknown parameter for {what}{hint}; "
                f"allowed: {', '.join(searchable)}"
            )
        if not allowed[name].searchable:
            raise SpecError(
                f"search_space.{name}: is fixed for a whole study (it changes the "
                "data or the seeding); set it under objective instead"
            )
        _check_param(allowed[name], name, param)
    for combo in _assignments(spec, base_params(spec)):
        _check_combination(obj.model, info, combo, base_params(spec))


def base_params(spec: StudySpec) -> dict[str, Any]:
    """A trial's values before sampling: defaults <- the CSV's look_back/horizon <- settings."""
    obj = spec.objective
    base = {s.name: s.default for s in settings_for(obj.model, obj.task or "").values()}
    if isinstance(obj.dataset, CsvData):
        base.update(look_back=obj.dataset.look_back, horizon=obj.dataset.horizon)
    base.update(obj.settings)
    return base


def _is_fixed(name: str) -> bool:
    return any(s.name == name and not s.searchable for s in SETTINGS)


def _check_dataset(dataset: str | CsvData | None, task: str) -> DatasetInfo:
    """The data set's info (a CSV becomes a series of its row count), or a SpecError."""
    if dataset is None:
        raise SpecError(
            f"objective.dataset: a built-in model needs a dataset; available for "
            f"{task}: {', '.join(available(task))}"
        )
    if isinstance(dataset, CsvData):
        if task != "forecasting":
            raise SpecError(
                "objective.dataset: a CSV series ({csv: ..., target: ...}) is for "
                f"task forecasting, not {task}"
            )
        return _check_csv(dataset)
    info = lookup(dataset)
    if info is None:
        raise SpecError(
            f"objective.dataset: unknown data set {dataset!r}; available for "
            f"{task}: {', '.join(available(task))}"
        )
    if info.task != task:
        raise SpecError(
            f"objective.dataset: {info.name} is a {info.task} data set, not "
            f"{task}; available for {task}: {', '.join(available(task))}"
        )
    return info


def _check_csv(dataset: CsvData) -> DatasetInfo:
    from tuner.objectives.data.forecasting import read_csv_column

    path = Path(dataset.csv)
    if not path.is_file():
        raise SpecError(f"objective.dataset.csv: file not found: {dataset.csv}")
    try:
        values = read_csv_column(path, dataset.target)
    except KeyError as exc:
        raise SpecError(f"objective.dataset.target: {exc.args[0]}") from None
    except (ValueError, UnicodeDecodeError, IndexError) as exc:
        raise SpecError(
            f"objective.dataset.csv: {dataset.csv}: column {dataset.target!r} "
            f"must hold numbers ({exc})"
        ) from None
    return DatasetInfo(dataset.csv, DataKind.SERIES, path, 1, len(values), dataset.target)


def _check_metric(spec: StudySpec) -> None:
    task = spec.objective.task or "classification"
    metric = resolve_metric(spec)
    if metric not in METRICS[task]:
        raise SpecError(
            f"objective.metric: {metric!r} is not a metric of task {task}; "
            f"choose one of: {', '.join(METRICS[task])}"
        )
    expected = METRICS[task][metric]
    if spec.direction != expected:
        raise SpecError(f"objective.direction: {metric} must be {expected}d, got {spec.direction}")


def _check_param(setting: Setting, name: str, param: ParamSpec) -> None:
    where = f"search_space.{name}"
    if param.kind is ParamType.CATEGORICAL:
        for choice in param.choices or []:
            problem = setting.problem(choice)
            if problem:
                raise SpecError(f"{where}: choice {problem}")
        return
    if setting.kind in ("choice", "bool"):
        raise SpecError(f"{where}: takes choices ({setting.describe()}), not a range")
    if setting.kind == "int" and param.kind is not ParamType.INT:
        raise SpecError(
            f"{where}: must be an integer range (got low={param.low}, high={param.high})"
        )
    for bound in ("low", "high"):
        problem = setting.problem(getattr(param, bound))
        if problem:
            raise SpecError(f"{where}.{bound}: {problem}")


Assignment = dict[str, tuple[Any, str]]  # name -> (value, where it came from)


def _assignments(spec: StudySpec, base: dict[str, Any]) -> Iterator[Assignment]:
    """Every joint value of the combination-checked settings the search space can produce.

    Ranges contribute their two ends. A parameter whose ``when:`` may fail also takes its
    fixed value; conditions on parameters outside the checked set are taken as maybe-true.
    """
    space = spec.search_space
    settings = spec.objective.settings
    names = [n for n in sampling_order(space) if n in _COMBINED]
    names += [n for n in _COMBINED if n not in space and n in base]

    csv = isinstance(spec.objective.dataset, CsvData)

    def fixed(name: str) -> tuple[Any, str]:
        if name in settings:
            return base[name], f"objective.{name}"
        if csv and name in ("look_back", "horizon"):
            return base[name], f"objective.dataset.{name}"
        return base[name], "default"

    def walk(i: int, current: Assignment, sampled: set[str]) -> Iterator[Assignment]:
        if i == len(names):
            yield current
            return
        name = names[i]
        param = space.get(name)
        if param is None:
            yield from walk(i + 1, {**current, name: fixed(name)}, sampled)
            return
        can_hold, can_fail = True, False
        for ref, allowed in (param.when or {}).items():
            if ref in current:
                holds = ref in sampled and current[ref][0] in allowed
                can_hold, can_fail = can_hold and holds, can_fail or not holds
            else:
                can_fail = True
        if can_hold:
            if param.kind is ParamType.CATEGORICAL:
                values = list(param.choices or [])
            else:
                values = [param.low, param.high]
            for value in values:
                yield from walk(
                    i + 1, {**current, name: (value, f"search_space.{name}")}, sampled | {name}
                )
        if can_fail:
            yield from walk(i + 1, {**current, name: fixed(name)}, sampled)

    yield from walk(0, {}, set())


def _where(combo: Assignment, *names: str) -> str:
    """The study-file field to blame: the first of ``names`` the file itself set."""
    for name in names:
        if name in combo and combo[name][1] != "default":
            return combo[name][1]
    return f"objective.{names[0]}"


def _check_combination(
    model: str, info: DatasetInfo, combo: Assignment, base: dict[str, Any]
) -> None:
    value = {name: v for name, (v, _) in combo.items()}
    _check_norm_width(model, info, combo, value)
    if model == "cnn" and value.get("conv_dims") == 2 and info.kind is not DataKind.IMAGE:
        raise SpecError(
            f"objective.conv_dims: 2-D convolution needs an image data set "
            f"(digits); {info.name} is a sequence data set, use conv_dims: 1"
        )
    if model == "cnn" and value.get("conv_dims") == 1 and info.kind is DataKind.IMAGE:
        return  # images read row by row: allowed
    if info.kind is DataKind.SERIES_REGRESSION:
        for name in ("look_back", "horizon"):
            if combo.get(name, (None, "default"))[1] != "default":
                raise SpecError(
                    f"{combo[name][1]}: {info.name} maps each whole series to one "
                    "value; look_back and horizon apply to single-series data sets"
                )
    if info.kind is DataKind.SERIES and "look_back" in value:
        from tuner.objectives.data.forecasting import min_length

        look_back, horizon = int(value["look_back"]), int(value["horizon"])
        need = min_length(look_back, horizon, base["val_fraction"], base["test_fraction"])
        if info.length < need:
            raise SpecError(
                f"{_where(combo, 'look_back', 'horizon')}: series {info.name} has "
                f"{info.length} steps, too few for look_back={look_back}, horizon={horizon} "
                f"(needs at least {need})"
            )


def _check_norm_width(
    model: str, info: DatasetInfo, combo: Assignment, value: dict[str, Any]
) -> None:
    """Reject a LayerNorm over a single feature: the LayerNorm of one number is always 0, so
    the layer's output is a constant and the model cannot learn through it.

    The normalised width is the data set's input features (LSTM, placement ``input``), the
    LSTM's output width ``hidden_size x (2 if bidirectional else 1)`` (``between``,
    ``output``), or the CNN's ``channels`` (every block normalises its conv output).
    ``value`` is ``combo`` without the fields the values came from.
    """
    if value.get("norm") != "layernorm":
        return
    if model == "cnn":
        if int(value["channels"]) == 1:
            raise SpecError(
                f"{_where(combo, 'channels', 'norm')}: layernorm normalises the channels at "
                "each position, and channels=1 normalises to zero; use channels >= 2, or "
                "norm batchnorm or none"
            )
        return
    placement = value["norm_placement"]
    if placement == "input":
        if info.channels == 1:
            raise SpecError(
                f"{_where(combo, 'norm_placement', 'norm')}: layernorm at placement 'input' "
                f"would normalise {info.name}'s single input feature to zero; use batchnorm "
                "there, or placement between or output"
            )
        return
    if int(value["hidden_size"]) * (2 if value["bidirectional"] else 1) == 1:
        raise SpecError(
            f"{_where(combo, 'hidden_size', 'bidirectional', 'norm_placement', 'norm')}: "
            f"layernorm at placement {placement!r} would normalise the single output of a "
            "unidirectional LSTM with hidden_size=1 to zero; use hidden_size >= 2 or "
            "bidirectional: true, or batchnorm"
        )
