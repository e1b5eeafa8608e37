"""Helpers for the built-in objective tests: study specs from dicts, short in-memory studies.

A plain module (not a conftest) so that its name cannot clash with tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from tuner.spec import StudySpec, suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)


def build_spec(
    objective: dict[str, Any], search_space: dict[str, Any] | None = None, **extra: Any
) -> StudySpec:
    """A validated study spec around ``objective`` (name and budget filled in)."""
    data = {
        "name": "t",
        "objective": objective,
        "search_space": search_space or {},
        "budget": {"n_trials": 10},
        **extra,
    }
    return StudySpec.model_validate(data)


def run_study(
    spec: StudySpec,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    *,
    max_resource: int | None = None,
    seed: int = 0,
) -> optuna.Study:
    """Optimise ``objective`` in memory under Hyperband, sampling ``spec``'s search space first,
    failing (not raising) trials that raise, as a worker does."""
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(),
        direction=spec.direction,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max_resource or spec.objective.epochs, reduction_factor=3
        ),
    )

    study.optimize(sampled(spec, objective), n_trials=n_trials, catch=(Exception,))
    return study


def sampled(
    spec: StudySpec, objective: Callable[[optuna.Trial], float]
) -> Callable[[optuna.Trial], float]:
    """``objective`` behind the sampling step the worker performs before calling it."""

    def trial_fn(trial: optuna.Trial) -> float:
        suggest(trial, spec.search_space)
        return objective(trial)

    return trial_fn
