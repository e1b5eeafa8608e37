"""A small study that looks like one a tuner fleet produced, built with plain Optuna.

COMPLETE and PRUNED trials with learning curves (a successive-halving-like pattern: trials
stopped at steps 1, 3 and 7 of 12), two FAIL trials with reasons (one re-run), a RUNNING
trial, worker records in the study's system attrs, and a test score. Trials are added whole
(``create_trial``) so their start and end times can be set; artifacts, which Optuna accepts
only while a trial runs, live in a second study whose trials run with ask/tell
(:func:`run_with_artifacts`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path

import optuna
from optuna.artifacts import upload_artifact
from optuna.artifacts._protocol import ArtifactStore
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tuner.report import LEARNING_CURVE_ARTIFACT, WEIGHTS_ARTIFACT

DEMO_STUDY = "tuner-demo"
ARTIFACT_STUDY = "tuner-artifacts"
# Losses of the artifact study's trials (minimize): trial 1 is the best.
ARTIFACT_LOSSES = (0.5, 0.1, 0.3)
EPOCHS = 12
WORKERS = ("gpu-node-1:4101", "gpu-node-1:4102", "gpu-node-2:5200")
GPUS = {"gpu-node-1:4101": "0", "gpu-node-1:4102": "1", "gpu-node-2:5200": None}
FAIL_REASONS = {
    4: "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 11.17 GiB total capacity)",
    9: "worker lost: no heartbeat for 120 s (gpu-node-2:5200)",
}
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "hidden": IntDistribution(16, 256),
    "dropout": FloatDistribution(0.0, 0.5),
}


def _curve(lr: float, hidden: int, dropout: float, steps: int) -> dict[int, float]:
    quality = 0.92 - 0.05 * abs(math.log10(lr) + 2.5) - 0.1 * dropout + hidden / 5000
    return {s: round(quality * (1 - math.exp(-(s + 1) / 3)), 4) for s in range(steps)}


def populate(study: optuna.Study, *, n_trials: int = 24) -> None:
    """Add ``n_trials`` trials and tuner's fleet records to ``study`` (direction maximize)."""
    storage, study_id = study._storage, study._study_id
    start = dt.datetime.now() - dt.timedelta(minutes=30)
    stop_at = (1, 3, 7)
    for n in range(n_trials):
        params = {
            "lr": 10 ** (-4 + 3 * ((n * 7) % 11) / 10),
            "hidden": 16 + (n * 37) % 240,
            "dropout": ((n * 3) % 10) / 20,
        }
        # The running trial is on the worker whose record says so; the trial that failed
        # for a lost worker ran on the lost worker.
        worker = {9: WORKERS[2], n_trials - 1: WORKERS[0]}.get(n, WORKERS[n % len(WORKERS)])
        attrs: dict[str, object] = {"tuner:worker": worker, "tuner:gpu": GPUS[worker]}
        began = start + dt.timedelta(seconds=40 * n)
        if n in FAIL_REASONS:
            state, steps = TrialState.FAIL, 2
            attrs["tuner:fail_reason"] = FAIL_REASONS[n]
        elif n == n_trials - 1:
            state, steps = TrialState.RUNNING, 5
        elif n % 3 == 1:
            state, steps = TrialState.PRUNED, stop_at[n % 9 // 3] + 1
        else:
            state, steps = TrialState.COMPLETE, EPOCHS
        if n == 10:
            attrs["tuner:retry_of"] = 9
        curve = _curve(params["lr"], params["hidden"], params["dropout"], steps)
        trial = create_trial(
            state=state,
            value=curve[steps - 1] if state == TrialState.COMPLETE else None,
            params=params,
            distributions=DISTRIBUTIONS,
            intermediate_values=curve,
            user_attrs=attrs,
        )
        trial.datetime_start = began
        trial.datetime_complete = (
            None if state == TrialState.RUNNING else began + dt.timedelta(seconds=8 * steps)
        )
        study.add_trial(trial)
    now = time.time()
    for i, worker in enumerate(WORKERS):
        host, pid = worker.split(":")
        storage.set_study_system_attr(
            study_id,
            f"tuner:worker:{worker}",
            {
                "id": worker,
                "host": host,
                "pid": int(pid),
                "gpu": GPUS[worker],
                "state": ("running", "idle", "lost")[i],
                "heartbeat": now - (5, 30, 900)[i],
                "started": now - 1800,
                "trial": n_trials - 1 if i == 0 else None,
            },
        )
    storage.set_study_system_attr(study_id, "tuner:epochs", EPOCHS)
    best = study.best_trial.number
    storage.set_study_system_attr(
        study_id, "tuner:test_score", {"trial": best, "metric": "test_accuracy", "value": 0.8731}
    )


def weights_bytes(number: int) -> bytes:
    """What trial ``number`` of the artifact study saved as its weights."""
    return f"weights of trial {number}".encode()


def run_with_artifacts(study: optuna.Study, store: ArtifactStore, folder: Path) -> None:
    """Run ``ARTIFACT_LOSSES`` as trials of ``study`` (direction minimize) that leave the
    artifacts a built-in objective leaves: every trial ``learning_curve.json``, and a trial
    that beats every earlier one ``weights.pt``, so the best trial always has weights."""
    best = math.inf
    for loss in ARTIFACT_LOSSES:
        trial = study.ask({"lr": DISTRIBUTIONS["lr"]})
        files = folder / f"trial-{trial.number}"
        files.mkdir()
        curve = files / LEARNING_CURVE_ARTIFACT
        curve.write_text(json.dumps({"epochs": [1, 2], "value": [2 * loss, loss]}))
        upload_artifact(artifact_store=store, file_path=str(curve), study_or_trial=trial)
        if loss < best:
            weights = files / WEIGHTS_ARTIFACT
            weights.write_bytes(weights_bytes(trial.number))
            upload_artifact(artifact_store=store, file_path=str(weights), study_or_trial=trial)
            best = loss
        study.tell(trial, loss)
