"""Short real studies of each built-in objective on CPU: reporting, pruning, failures, resume."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from builtin_helpers import build_spec, run_study, sampled
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from tuner import _context
from tuner.checkpoint import RETRY_OF_ATTR
from tuner.objectives import (
    CURVE_ATTR,
    WEIGHTS_ATTR,
    NonFiniteLoss,
    _builtin,
    builtin_objective,
    score_test,
)

LSTM_CLS = {
    "model": "lstm",
    "task": "classification",
    "dataset": "italy_power_demand",
    "metric": "val_accuracy",
    "epochs": 9,
    "batch_size": 16,
    "hidden_size": 16,
    "patience": 0,
}
LSTM_SPACE = {
    "lr": {"low": 1e-4, "high": 3e-2, "log": True},
    "pooling": {"choices": ["last", "mean", "attention"]},
    "norm": {"choices": ["none", "batchnorm"]},
}
FORECAST = {
    "model": "lstm",
    "task": "forecasting",
    "dataset": "airline",
    "metric": "val_rmse",
    "epochs": 9,
    "batch_size": 16,
    "hidden_size": 16,
    "num_layers": 1,
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def context(tmp_path: Path) -> Iterator[_context.TrialContext]:
    """A worker's trial context with a file artifact store, as `tuner worker` provides."""
    spec = build_spec(LSTM_CLS)
    ctx = _context.TrialContext(spec, FileSystemArtifactStore(str(tmp_path)), "test-worker")
    with _context.running(ctx):
        yield ctx


def _assert_reported_every_epoch(study: optuna.Study) -> None:
    for trial in study.trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED), trial.state
        epochs = trial.user_attrs["epochs_trained"]
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
        assert trial.user_attrs["device"] == "cpu"
        assert trial.user_attrs["peak_gpu_mem_mb"] is None
        assert trial.user_attrs["epoch_time_s"] > 0


def test_lstm_classification_study(context: _context.TrialContext) -> None:
    spec = build_spec(LSTM_CLS, LSTM_SPACE)
    study = run_study(spec, builtin_objective(spec), n_trials=10)
    _assert_reported_every_epoch(study)
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    best = study.best_trial
    assert best.value == max(best.intermediate_values.values())  # best epoch, not last
    assert best.value > 0.8
    # the best trial kept its weights, every trial its learning curve
    assert WEIGHTS_ATTR in best.user_attrs
    curve_id = study.trials[-1].user_attrs[CURVE_ATTR]
    with context.artifact_store.open_reader(curve_id) as f:
        curve = json.loads(f.read())
    assert curve["epochs"] == list(range(1, study.trials[-1].user_attrs["epochs_trained"] + 1))
    assert len(curve["train_loss"]) == len(curve["lr"]) == len(curve["val"]["val_accuracy"])
    score = score_test(spec, best, context.artifact_store)
    assert score["metric"] == "test_accuracy" and score["n_test"] == 1029  # the UCR test file
    assert 0.7 < score["value"] <= 1.0


def test_cnn_digits_study(context: _context.TrialContext) -> None:
    spec = build_spec(
        {
            "model": "cnn",
            "task": "classification",
            "dataset": "digits",
            "epochs": 6,
            "batch_size": 64,
            "patience": 0,
            "metric": "val_accuracy",
        },
        {
            "lr": {"low": 1e-3, "high": 3e-2, "log": True},
            "channels": {"choices": [16, 32]},
            "num_layers": {"low": 2, "high": 3},
            "pooling": {"choices": ["max", "avg"]},
            "norm": {"choices": ["none", "batchnorm", "layernorm"]},
        },
    )
    study = run_study(spec, builtin_objective(spec), n_trials=8)
    _assert_reported_every_epoch(study)
    assert TrialState.PRUNED in [t.state for t in study.trials]
    assert study.best_value > 0.9
    score = score_test(spec, study.best_trial, context.artifact_store)
    assert score["metric"] == "test_accuracy" and score["n_test"] == 359
    assert score["value"] > 0.9


def test_cnn_1d_study_on_padded_multivariate_sequences(context: _context.TrialContext) -> None:
    """The 1-D CNN on JapaneseVowels (12 channels, unequal lengths) runs a short study."""
    spec = build_spec(
        {
            "model": "cnn",
            "task": "classification",
            "dataset": "JapaneseVowels",
            "epochs": 6,
            "batch_size": 64,
            "channels": 16,
            "num_layers": 2,
            "patience": 0,
            "metric": "val_accuracy",
        },
        {
            "lr": {"low": 1e-4, "high": 3e-2, "log": True},
            "norm": {"choices": ["none", "batchnorm", "layernorm"]},
            "norm_placement": {"choices": ["before_activation", "after_activation"]},
        },
    )
    study = run_study(spec, builtin_objective(spec), n_trials=6)
    _assert_reported_every_epoch(study)
    assert TrialState.PRUNED in [t.state for t in study.trials]
    assert study.best_value > 0.8
    score = score_test(spec, study.best_trial, context.artifact_store)
    assert score["metric"] == "test_accuracy" and score["n_test"] == 370


def test_lstm_forecasting_study(context: _context.TrialContext) -> None:
    spec = build_spec(
        FORECAST,
        {"lr": {"low": 1e-4, "high": 3e-2, "log": True}, "pooling": {"choices": ["last", "mean"]}},
    )
    study = run_study(spec, builtin_objective(spec), n_trials=8)
    _assert_reported_every_epoch(study)
    assert TrialState.PRUNED in [t.state for t in study.trials]
    score = score_test(spec, study.best_trial, context.artifact_store)
    assert score["metric"] == "test_rmse"
    # passengers are in the hundreds: an RMSE on the scaled series would be below ~3
    assert 10 < score["value"] < 500
    assert score["metrics"]["test_mse"] == pytest.approx(score["value"] ** 2, rel=1e-5)


def test_refit_retrains_the_best_configuration_on_the_whole_training_split(
    context: _context.TrialContext,
) -> None:
    """The default test score retrains on fit + validation parts (67 ItalyPowerDemand
    series, not the 54 a trial fits on), repeatably; ``refit: false`` scores the trial's
    own weights, the same numbers as evaluating weights.pt by hand."""
    spec = build_spec(LSTM_CLS, LSTM_SPACE)
    study = run_study(spec, builtin_objective(spec), n_trials=3)
    best = study.best_trial
    params = _builtin.trial_params(spec, best.params)
    data = _builtin.load_data(spec.objective.dataset, params)
    assert (len(data.train), len(data.val)) == (54, 13)

    refit = score_test(spec, best, context.artifact_store)
    assert refit["refit"] == {"epochs": LSTM_CLS["epochs"], "n_train": 67}
    assert score_test(spec, best, context.artifact_store)["metrics"] == refit["metrics"]

    kept = score_test(spec, best, context.artifact_store, refit=False)
    off = build_spec({**LSTM_CLS, "refit": False}, LSTM_SPACE)
    assert score_test(off, best, context.artifact_store) == kept and kept["refit"] is None
    with context.artifact_store.open_reader(best.user_attrs[WEIGHTS_ATTR]) as f:
        saved = torch.load(f, weights_only=True)
    model = _builtin.build_model("lstm", params, data)
    model.load_state_dict(saved["state_dict"])
    by_hand = _builtin.evaluate(model, data.test, data, prefix="test_")
    assert kept["metrics"] == by_hand
    assert refit["metrics"] != kept["metrics"], "the refit model is a different model"


def test_nan_loss_fails_the_trial_and_the_study_goes_on() -> None:
    spec = build_spec(
        {**FORECAST, "optimizer": "sgd", "grad_clip": 0.0, "patience": 0},
        {"lr": {"low": 1e-3, "high": 10.0, "log": True}},
    )
    objective = sampled(spec, builtin_objective(spec))
    study = optuna.create_study(direction="minimize")
    study.enqueue_trial({"lr": 10.0})
    study.enqueue_trial({"lr": 1e-3})
    study.optimize(objective, n_trials=2, catch=(Exception,))
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["epochs_trained"] < FORECAST["epochs"]
    with pytest.raises(NonFiniteLoss, match=r"became (nan|inf) at epoch \d+"):
        objective(optuna.trial.FixedTrial({"lr": 10.0}))


def test_fixed_trial_retrains_a_chosen_configuration() -> None:
    """A FixedTrial run (re-training chosen parameters, no study) returns the same value as
    that configuration in a study; with no study there is no best to keep weights for."""
    spec = build_spec({**LSTM_CLS, "epochs": 2}, {"lr": {"low": 1e-4, "high": 3e-2}})
    fixed = optuna.trial.FixedTrial({"lr": 0.01})
    value = builtin_objective(spec)(fixed)
    assert 0.0 <= value <= 1.0
    assert WEIGHTS_ATTR not in fixed.user_attrs
    assert fixed.user_attrs["epochs_trained"] == 2
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"lr": 0.01})
    study.optimize(sampled(spec, builtin_objective(spec)), n_trials=1)
    assert study.trials[0].value == value


def test_fixed_trial_retrains_inside_a_worker_without_checkpoints(tmp_path: Path) -> None:
    """Inside a worker's trial context a FixedTrial has no study to key checkpoints by, so
    it trains from scratch and saves none, rather than failing."""
    spec = build_spec({**LSTM_CLS, "epochs": 2}, {"lr": {"low": 1e-4, "high": 3e-2}})
    ctx = _context.TrialContext(spec, FileSystemArtifactStore(str(tmp_path)), "w")
    with _context.running(ctx):
        value = builtin_objective(spec)(optuna.trial.FixedTrial({"lr": 0.01}))
    assert 0.0 <= value <= 1.0
    assert list(tmp_path.iterdir()) == []


def test_same_seed_same_result() -> None:
    spec = build_spec({**LSTM_CLS, "epochs": 3}, LSTM_SPACE)
    first = run_study(spec, builtin_objective(spec), n_trials=2)
    second = run_study(spec, builtin_objective(spec), n_trials=2)
    for a, b in zip(first.trials, second.trials, strict=True):
        assert a.params == b.params
        assert a.intermediate_values == b.intermediate_values


class _Killed(Exception):
    """Stands in for a worker that died after writing a checkpoint."""


def test_rerun_of_a_killed_trial_resumes_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = build_spec({**LSTM_CLS, "epochs": 6, "dropout": 0.2, "scheduler": "cosine"})
    params = {"lr": 0.01}
    space_spec = build_spec(spec.objective.model_dump(), {"lr": {"low": 1e-3, "high": 0.1}})

    def run(
        store_dir: Path,
        kill_after: int | None,
        retry_of: int | None = None,
        study: optuna.Study | None = None,
    ) -> tuple[optuna.Study, list[int]]:
        saved_steps: list[int] = []
        real_save = _builtin.save_checkpoint

        def save(trial: optuna.Trial, step: int, state: dict) -> None:
            real_save(trial, step, state)
            saved_steps.append(step)
            if step == kill_after:
                raise _Killed

        monkeypatch.setattr(_builtin, "save_checkpoint", save)
        study = study or optuna.create_study(direction="maximize", study_name="resume")
        attrs = {RETRY_OF_ATTR: retry_of} if retry_of is not None else {}
        study.enqueue_trial(params, user_attrs=attrs)
        ctx = _context.TrialContext(spec, FileSystemArtifactStore(str(store_dir)), "w")
        objective = sampled(space_spec, builtin_objective(space_spec))
        with _context.running(ctx):
            study.optimize(objective, n_trials=1, catch=(_Killed,))
        return study, saved_steps

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    uninterrupted, _ = run(tmp_path / "a", kill_after=None)
    killed, steps = run(tmp_path / "b", kill_after=3)
    assert steps == [1, 2, 3] and killed.trials[0].state == TrialState.FAIL
    resumed, steps = run(tmp_path / "b", kill_after=None, retry_of=0, study=killed)
    rerun = resumed.trials[1]
    assert steps == [4, 5, 6]  # epochs 1-3 were not trained again
    assert rerun.state == TrialState.COMPLETE
    assert rerun.intermediate_values == uninterrupted.trials[0].intermediate_values
    assert rerun.value == uninterrupted.trials[0].value


def test_worker_fails_bad_builtin_trials_alone_and_scores_the_best_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real worker: a NaN loss, a raised exception and a CUDA out-of-memory error
    (simulated on CPU, mid-epoch) each fail their trial with the reason; the worker goes on.
    When the budget is spent the best trial is scored on the test split once, and
    `tuner best` shows that score."""
    import subprocess
    import sys

    import yaml

    import tuner.objectives
    from tuner.fleet import open_study, run_worker
    from tuner.objectives._select import TEST_SCORE_ATTR, study_done_hook
    from tuner.spec import load_spec
    from tuner.storage import open_storage

    study_file = tmp_path / "faults.yaml"
    document = {
        "name": "builtin-faults",
        "objective": {
            **FORECAST,
            "direction": "minimize",
            "epochs": 3,
            "optimizer": "sgd",
            "grad_clip": 0.0,
            "patience": 0,
        },
        "search_space": {"lr": {"low": 1e-3, "high": 10.0, "log": True}},
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
        "budget": {"n_trials": 5},
        "workers": {"cpu": 1, "heartbeat_interval": 0.5, "heartbeat_grace": 3.0},
    }
    study_file.write_text(yaml.safe_dump(document, sort_keys=False))
    spec = load_spec(study_file)
    url = f"journal://{tmp_path / 'journal.log'}"
    study = open_study(spec, open_storage(url))
    for lr in (10.0, 0.01, 0.01, 0.01, 0.02):
        study.enqueue_trial({"lr": lr})

    faults = {
        1: RuntimeError("bad batch"),
        2: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    }
    current: dict[str, int] = {}
    real_build = _builtin.build_model

    def build(model: str, params: dict, data: object) -> torch.nn.Module:
        net = real_build(model, params, data)
        fault = faults.get(current["trial"])
        if fault is not None:
            calls = [0]
            forward = net.forward

            def failing_forward(x: torch.Tensor, lengths: torch.Tensor | None = None):
                calls[0] += 1
                if calls[0] > 8:  # in epoch 2 (airline: 5 batches + 1 validation per epoch)
                    raise fault
                return forward(x, lengths)

            net.forward = failing_forward
        return net

    monkeypatch.setattr(_builtin, "build_model", build)
    builtin = builtin_objective(spec)

    def objective(trial: optuna.Trial) -> float:
        current["trial"] = trial.number
        return builtin(trial)

    scored: list[int] = []
    real_score = score_test

    def counting_score(spec_: object, trial: optuna.trial.FrozenTrial, store: object) -> dict:
        scored.append(trial.number)
        return real_score(spec_, trial, store)

    monkeypatch.setattr(tuner.objectives, "score_test", counting_score)
    hook = study_done_hook(spec)
    report = run_worker(spec, url, objective, handle_signals=False, on_study_done=hook)
    assert report.trials_run == 5 and report.outcomes == {"FAIL": 3, "COMPLETE": 2}

    final = optuna.load_study(study_name=spec.name, storage=open_storage(url)).trials
    assert [t.state for t in final] == [TrialState.FAIL] * 3 + [TrialState.COMPLETE] * 2
    reasons = [t.user_attrs.get("tuner:fail_reason") for t in final]
    assert reasons[0] is not None
    assert re.fullmatch(r"NonFiniteLoss: (loss|val_rmse) became (nan|inf) at epoch \d+", reasons[0])
    assert reasons[1] == "RuntimeError: bad batch"
    assert reasons[2].startswith("OutOfMemoryError: CUDA out of memory")
    for t in final[1:3]:  # failed mid-way: what ran is still recorded
        assert t.user_attrs["epochs_trained"] == 1 and sorted(t.intermediate_values) == [1]
        assert t.user_attrs["device"] == "cpu" and CURVE_ATTR in t.user_attrs

    # a second worker finds the budget spent: the test split is not scored again
    run_worker(spec, url, objective, handle_signals=False, on_study_done=hook)
    best = min((t for t in final if t.state is TrialState.COMPLETE), key=lambda t: t.value)
    assert scored == [best.number]
    stored = optuna.load_study(study_name=spec.name, storage=open_storage(url))
    score = stored._storage.get_study_system_attrs(stored._study_id)[TEST_SCORE_ATTR]
    assert score["trial"] == best.number and score["metric"] == "test_rmse"

    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuner",
            "best",
            str(study_file),
            "--storage",
            url,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    best_json = json.loads(shown.stdout)
    assert best_json["number"] == best.number
    assert best_json["test"]["metric"] == "test_rmse"
    assert best_json["test"]["value"] == pytest.approx(score["value"])


def test_user_csv_series_trains_with_paths_relative_to_the_study_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, context: _context.TrialContext
) -> None:
    """{csv, target, look_back, horizon}: the path is read relative to the study file, the
    search space may override the CSV's look_back, and the metrics are in the CSV's units."""
    import math

    import yaml

    from tuner.spec import load_spec

    (tmp_path / "data").mkdir()
    values = [1000.0 + 200.0 * math.sin(i / 4.0) + 3.0 * i for i in range(120)]
    rows = "".join(f"{i},{v:.3f},x\n" for i, v in enumerate(values))
    (tmp_path / "data" / "sales.csv").write_text("month,sales,note\n" + rows)
    study_file = tmp_path / "sales.yaml"
    objective = {
        **FORECAST,
        "dataset": {"csv": "data/sales.csv", "target": "sales", "look_back": 12, "horizon": 2},
        "metric": "val_mae",
        "direction": "minimize",
        "epochs": 4,
    }
    study_file.write_text(
        yaml.safe_dump(
            {
                "name": "csv",
                "objective": objective,
                "search_space": {"look_back": {"choices": [6, 12]}},
                "budget": {"n_trials": 3},
            }
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the CSV path must not depend on the shell's directory
    spec = load_spec(study_file)
    study = optuna.create_study(direction="minimize")
    study.enqueue_trial({"look_back": 6})
    study.optimize(sampled(spec, builtin_objective(spec)), n_trials=1)
    trial = study.trials[0]
    assert trial.state is TrialState.COMPLETE
    score = score_test(spec, trial, context.artifact_store)
    assert score["metric"] == "test_mae"
    # scaled units would give an error well below 3; the series moves by hundreds
    assert 3 < score["value"] < 1000
    # horizon 2 from the CSV, look_back 6 from the search space: 120 - 6 - 2 + 1 windows
    params = _builtin.trial_params(spec, trial.params)
    assert (params["look_back"], params["horizon"]) == (6, 2)
    data = _builtin.load_data(spec.objective.dataset, params)
    assert data.n_outputs == 2 and data.length == 6
    assert len(data.train) + len(data.val) + len(data.test) == 120 - 6 - 2 + 1
