"""Small user objectives the tests run through the real worker path."""

from __future__ import annotations

import math
import os
import time

import optuna


def quadratic(trial: optuna.Trial) -> float:
    """A fast objective with a learning curve, so pruners have something to read."""
    x, y = trial.params["x"], trial.params["y"]
    loss = (x - 1.0) ** 2 + (y + 2.0) ** 2
    for step in range(4):
        trial.report(loss * (1 + 1 / (step + 1)), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss


def slow(trial: optuna.Trial) -> float:
    """Like ``quadratic`` but each step takes ``TUNER_TEST_STEP_SECONDS`` (default 0.3 s)."""
    pause = float(os.environ.get("TUNER_TEST_STEP_SECONDS", "0.3"))
    value = (trial.params["x"] - 1.0) ** 2
    for step in range(5):
        time.sleep(pause)
        trial.report(value, step)
    return value


def failing(trial: optuna.Trial) -> float:
    """Always raises: a misconfigured study."""
    raise RuntimeError("data file missing")


def nan(trial: optuna.Trial) -> float:
    return math.nan


def checkpointed(trial: optuna.Trial) -> float:
    """Six steps of ``TUNER_TEST_STEP_SECONDS`` each, checkpointed with tuner's public API.

    A re-run resumes after the last saved step: it records where it started in the user
    attribute ``start_step`` and reports intermediate values only from there on. With
    ``TUNER_TEST_HOLD_AT_STEP=N`` the trial stops moving once step N is saved, so a test that
    kills its worker knows the checkpoint the re-run starts from, however loaded the machine.
    """
    import tuner

    pause = float(os.environ.get("TUNER_TEST_STEP_SECONDS", "0.3"))
    hold_at = int(os.environ.get("TUNER_TEST_HOLD_AT_STEP", "-1"))
    value, start = (trial.params["x"] - 1.0) ** 2, 0
    saved = tuner.load_checkpoint(trial)
    if saved is not None:
        start, state = saved
        value = state["value"]
    trial.set_user_attr("start_step", start)
    for step in range(start, 6):
        time.sleep(pause)
        trial.report(value, step)
        tuner.save_checkpoint(trial, step + 1, {"value": value})
        while step + 1 == hold_at:
            time.sleep(pause)  # until the test kills this worker
    return value


def out_of_memory(trial: optuna.Trial) -> float:
    """Fails the way a too-large model does on a GPU (simulated: raised directly on CPU)."""
    import torch

    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def faulty(trial: optuna.Trial) -> float:
    """Trial 1 raises, trial 2 returns NaN, trial 3 runs out of memory; the rest succeed."""
    if trial.number == 1:
        raise ValueError("bad batch")
    if trial.number == 2:
        return math.nan
    if trial.number == 3:
        return out_of_memory(trial)
    return quadratic(trial)
