"""Turning the study file's search space into Optuna suggestions.

Conditional parameters (``when:``) form a graph; it is checked for unknown references and
cycles when the file is validated, and sampled in dependency order, so a parameter is only
suggested when the parameters it depends on took one of the listed values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from tuner.spec._model import ParamSpec, ParamType


def check_conditions(space: Mapping[str, ParamSpec]) -> None:
    """Raise ``ValueError`` naming the field when a ``when:`` is unknown, impossible or cyclic."""
    for name, param in space.items():
        for ref, values in (param.when or {}).items():
            where = f"search_space.{name}.when.{ref}"
            if ref == name:
                raise ValueError(f"{where}: a parameter cannot depend on itself")
            if ref not in space:
                raise ValueError(
                    f"{where}: refers to unknown parameter {ref!r}; known: {', '.join(space)}"
                )
            if not values:
                raise ValueError(f"{where}: needs at least one value")
            target = space[ref]
            if target.kind is ParamType.CATEGORICAL:
                missing = [v for v in values if v not in (target.choices or [])]
                if missing:
                    raise ValueError(
                        f"{where}: {missing[0]!r} is not one of {ref}'s choices {target.choices}"
                    )
    sampling_order(space)


def sampling_order(space: Mapping[str, ParamSpec]) -> list[str]:
    """Parameter names with each one after the parameters its ``when:`` depends on."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise ValueError(f"search_space.{name}.when: conditions form a cycle ({cycle})")
        state[name] = "visiting"
        for ref in space[name].when or {}:
            visit(ref, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in space:
        visit(name, [])
    return order


def suggest(trial: optuna.Trial, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Suggest every active parameter of ``space`` on ``trial`` and return the sampled values.

    Parameters whose ``when:`` does not hold are left out, so ``trial.params`` only holds
    parameters that mean something for this trial.
    """
    values: dict[str, Any] = {}
    for name in sampling_order(space):
        param = space[name]
        if not all(
            values.get(ref, _ABSENT) in allowed for ref, allowed in (param.when or {}).items()
        ):
            continue
        values[name] = suggest_one(trial, name, param)
    return values


_ABSENT = object()


def suggest_one(trial: optuna.Trial, name: str, param: ParamSpec) -> Any:
    """Suggest one parameter with the Optuna call that matches its type."""
    if param.kind is ParamType.CATEGORICAL:
        return trial.suggest_categorical(name, list(param.choices or []))
    if param.kind is ParamType.INT:
        return trial.suggest_int(
            name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log
        )
    return trial.suggest_float(
        name, float(param.low), float(param.high), step=param.step, log=param.log
    )


MAX_GRID_POINTS = 100_000


def grid_values(name: str, param: ParamSpec) -> list[Any]:
    """Every value a grid search visits for one parameter; ranges need a ``step``.

    Raises ``ValueError`` for a float range without a step, or more than
    :data:`MAX_GRID_POINTS` values (counted before any is made).
    """
    if param.kind is ParamType.CATEGORICAL:
        return list(param.choices or [])
    if param.kind is not ParamType.INT and param.step is None:
        raise ValueError(
            f"search_space.{name}: grid sampling needs choices or a step for float ranges"
        )
    span = (param.high - param.low) / (param.step or 1)
    if not span < MAX_GRID_POINTS:  # also catches an infinite span
        raise ValueError(
            f"search_space.{name}: the grid has more than {MAX_GRID_POINTS} values; "
            "use a larger step"
        )
    if param.kind is ParamType.INT:
        return list(range(int(param.low), int(param.high) + 1, int(param.step or 1)))
    count = int(round(span)) + 1
    return [float(param.low) + i * float(param.step) for i in range(count)]
