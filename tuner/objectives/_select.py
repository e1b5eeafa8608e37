"""Choosing the objective a study file names: a built-in model or the user's function."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tuner import _context
from tuner.objectives._user import load_user_objective
from tuner.spec import StudySpec

TEST_SCORE_ATTR = "tuner:test_score"
_log = logging.getLogger(__name__)

Objective = Callable[[optuna.Trial], float]


def check_objective(spec: StudySpec, study_dir: Path | None = None) -> None:
    """Raise :class:`SpecError` (without the file name) if the objective cannot run."""
    if spec.objective.is_user_function:
        load_user_objective(spec.objective.model, _paths(study_dir))
        return
    from tuner.objectives import check_builtin

    check_builtin(spec)


def load_objective(spec: StudySpec, study_dir: Path | None = None) -> Objective:
    """The callable a worker runs for each trial."""
    if spec.objective.is_user_function:
        return load_user_objective(spec.objective.model, _paths(study_dir))
    from tuner.objectives import builtin_objective

    return builtin_objective(spec)


def study_done_hook(spec: StudySpec) -> Callable[[optuna.Study], None] | None:
    """What runs once when the budget is spent: built-ins score the best trial on the test split."""
    if spec.objective.is_user_function:
        return None
    from tuner.objectives import score_test

    def hook(study: optuna.Study) -> None:
        context = _context.current()
        if context is None or TEST_SCORE_ATTR in study._storage.get_study_system_attrs(
            study._study_id
        ):
            return
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return
        best = study.best_trial
        try:
            score = score_test(spec, best, context.artifact_store)
        except Exception as exc:  # scoring must never take a finished study down
            _log.warning("test split not scored for trial %d: %s", best.number, exc)
            return
        study._storage.set_study_system_attr(
            study._study_id, TEST_SCORE_ATTR, {"trial": best.number, **score}
        )

    return hook


def _paths(study_dir: Path | None) -> tuple[Path, ...]:
    return (study_dir,) if study_dir is not None else ()
