"""A user objective for the deployment tests: fast, deterministic, never fails."""

from __future__ import annotations

import time

import optuna


def objective(trial: optuna.Trial) -> float:
    """(x - 1)^2 after a short pause, so that concurrent workers share the trials."""
    time.sleep(0.1)
    return (trial.params["x"] - 1.0) ** 2
