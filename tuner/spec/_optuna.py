"""Building Optuna samplers and pruners from the study file's short names.

Options beside ``type`` go to the Optuna constructor; they are checked against its signature
so a misspelt option is a validation error, not a crash inside a worker.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import optuna

from tuner.spec._model import PrunerSpec, SamplerSpec, StudySpec
from tuner.spec._space import MAX_GRID_POINTS, grid_values

_SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "grid": optuna.samplers.GridSampler,
}

_PRUNERS: dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner,
}


def _construct(kind: str, name: str, factory: Callable[..., Any], options: dict[str, Any]) -> Any:
    accepted = set(inspect.signature(factory).parameters) - {"self", "search_space"}
    for key in options:
        if key == "search_space":
            continue
        if key not in accepted:
            raise ValueError(
                f"{kind}: unknown option {key!r} for {kind} type {name!r}; "
                f"allowed: {', '.join(sorted(accepted)) or 'none'}"
            )
    try:
        with warnings.catch_warnings():
            # "experimental" notices would turn a one-line error into several lines.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factory(**options)
    except Exception as exc:  # constructors check their options with any exception type
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{kind}: {name} rejects its options: {detail}") from None


def build_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler the study file names. Raises ``ValueError`` naming a bad option.

    Each worker of a fleet passes its own ``seed_offset``; with one seed for all, workers
    started together would draw the same parameters.
    """
    sampler: SamplerSpec = spec.sampler
    options = dict(sampler.options)
    if sampler.seed is not None:
        options["seed"] = sampler.seed + seed_offset
    if "search_space" in options:
        raise ValueError("sampler: search_space comes from the study file's search_space")
    if sampler.type == "grid":
        options["search_space"] = {
            name: grid_values(name, param) for name, param in spec.search_space.items()
        }
        points = math.prod(len(values) for values in options["search_space"].values())
        if points > MAX_GRID_POINTS:
            raise ValueError(
                f"search_space: the grid has {points} points, more than {MAX_GRID_POINTS}; "
                "use larger steps or fewer parameters"
            )
    return _construct("sampler", sampler.type, _SAMPLERS[sampler.type], options)


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The pruner the study file names; Hyperband's ``max_resource`` defaults to the epochs."""
    pruner: PrunerSpec = spec.pruner
    options = dict(pruner.options)
    if pruner.type == "hyperband" and "max_resource" not in options:
        options["max_resource"] = spec.objective.epochs
    return _construct("pruner", pruner.type, _PRUNERS[pruner.type], options)
