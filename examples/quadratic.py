"""A user's own objective for tuner: a plain Optuna function.

When tuner calls it, the study file's search space is already sampled into ``trial.params``;
the function may suggest more parameters and report intermediate values for the pruner.
Run it with:  tuner launch examples/quadratic.yaml
"""

from __future__ import annotations

import optuna


def objective(trial: optuna.Trial) -> float:
    x = trial.params["x"]
    y = trial.params["y"]
    shift = trial.suggest_float("shift", -1.0, 1.0)  # parameters may also be suggested here
    loss = (x - 2.0) ** 2 + (y + 1.0) ** 2 + shift**2
    for step in range(5):
        trial.report(loss * (1.0 + 1.0 / (step + 1)), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss
