"""The built-in objective: one trial = merge parameters, build the model, run the loop.

The callable returned by :func:`builtin_objective` is what a tuner worker (or a plain
``study.optimize``) calls. It reports the validation metric after every epoch, prunes when the
pruner says so, checkpoints every epoch so a re-run of a lost trial resumes, and records
timing and device as trial attributes. It returns the best validation value of the run: with
early stopping the last epochs are by construction no better, and the weights kept and scored
on the test split are that best epoch's.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import logging
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from tuner import _context
from tuner.checkpoint import RETRY_OF_ATTR, load_checkpoint, save_checkpoint
from tuner.errors import StorageError
from tuner.objectives._check import base_params, check_builtin, resolve_metric
from tuner.objectives.data import DataKind, Part, Splits, load_data
from tuner.objectives.models import build_model, conv_dims
from tuner.objectives.train import EpochLog, TrainConfig, evaluate, fit
from tuner.spec import StudySpec

log = logging.getLogger(__name__)

WEIGHTS_ATTR = "weights_artifact_id"
CURVE_ATTR = "learning_curve_artifact_id"


def trial_params(spec: StudySpec, sampled: dict[str, Any]) -> dict[str, Any]:
    """A trial's full parameters: defaults <- objective settings <- sampled values."""
    params = base_params(spec)
    params["epochs"] = spec.objective.epochs
    params.update(sampled)
    return params


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _for_model(data: Splits, model: str, params: dict[str, Any]) -> Splits:
    """Images feed the LSTM and the 1-D CNN row by row."""
    if data.kind is not DataKind.IMAGE or (model == "cnn" and conv_dims(params, data.kind) == 2):
        return data
    return dataclasses.replace(
        data,
        train=data.train.as_sequence(),
        val=data.val.as_sequence(),
        test=data.test.as_sequence(),
    )


def _seed(
    spec: StudySpec, trial: optuna.Trial | optuna.trial.FrozenTrial, params: dict[str, Any]
) -> int:
    """The ``seed`` setting, else sampler seed + trial number (the original's, for a re-run,
    so that a resumed trial continues the same random stream)."""
    if params.get("seed") is not None:
        return int(params["seed"])
    number = int(trial.user_attrs.get(RETRY_OF_ATTR, trial.number))
    return ((spec.sampler.seed or 0) + number) % (2**31 - 1)


def _data_key(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(params.get(k) for k in ("val_fraction", "test_fraction", "look_back", "horizon"))


def builtin_objective(spec: StudySpec) -> Callable[[optuna.Trial], float]:
    """The objective of ``spec``'s built-in model, ready for ``study.optimize``.

    Validates ``spec`` with :func:`check_builtin` first. Data sets are loaded on first use and
    cached for the life of the returned callable (one per worker process).

    The callable expects the search space already sampled into ``trial.params``. It raises
    ``optuna.TrialPruned`` when pruned, :class:`NonFiniteLoss` on a NaN/Inf loss, and lets
    ``torch.cuda.OutOfMemoryError`` through after releasing the trial's GPU memory.
    """
    check_builtin(spec)
    metric = resolve_metric(spec)
    cache: dict[tuple[Any, ...], Splits] = {}
    model_name = spec.objective.model

    def objective(trial: optuna.Trial) -> float:
        params = trial_params(spec, trial.params)
        key = _data_key(params)
        if key not in cache:
            cache[key] = load_data(spec.objective.dataset, params)  # type: ignore[arg-type]
        data = _for_model(cache[key], model_name, params)
        device = _device()
        torch.manual_seed(_seed(spec, trial, params))
        model = build_model(model_name, params, data).to(device)
        cfg = TrainConfig.from_params(params, metric=metric, direction=spec.direction)
        saved = load_checkpoint(trial)
        resume = saved[1] if saved is not None else None
        logs: list[EpochLog] = []
        if resume is not None:
            logs = [EpochLog(**h) for h in resume["history"]]
            for h in logs:  # the re-run shows the whole curve, and the pruner sees it
                trial.report(h.value, h.epoch)
            log.info("trial %d resumes after epoch %d", trial.number, resume["epoch"])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def on_epoch(entry: EpochLog, snapshot: Callable[[], dict[str, Any]]) -> None:
            logs.append(entry)
            trial.report(entry.value, entry.epoch)
            save_checkpoint(trial, entry.epoch, snapshot())
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned at epoch {entry.epoch} ({metric}={entry.value:.4g})"
                )

        try:
            result = fit(
                model, data, cfg, seed=_seed(spec, trial, params), resume=resume, on_epoch=on_epoch
            )
        except torch.cuda.OutOfMemoryError as exc:
            traceback.clear_frames(exc.__traceback__)  # drop the loop's tensors
            del model
            gc.collect()
            torch.cuda.empty_cache()
            raise
        finally:
            _record(trial, logs, device)
        _keep_weights_if_best(trial, model, params, result.best_value)
        return result.best_value

    return objective


def _record(trial: optuna.Trial, logs: list[EpochLog], device: torch.device) -> None:
    """Trial attributes and the learning-curve artifact, also for pruned and failed trials."""
    seconds = [e.seconds for e in logs]
    trial.set_user_attr("epochs_trained", len(logs))
    trial.set_user_attr("epoch_time_s", sum(seconds) / len(seconds) if seconds else None)
    peak = None
    name = "cpu"
    if device.type == "cuda":
        peak = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        name = f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    trial.set_user_attr("device", name)
    trial.set_user_attr("peak_gpu_mem_mb", peak)
    curve = {
        "epochs": [e.epoch for e in logs],
        "train_loss": [e.train_loss for e in logs],
        "value": [e.value for e in logs],
        "val": {k: [e.metrics[k] for e in logs] for k in (logs[0].metrics if logs else {})},
        "lr": [e.lr for e in logs],
        "epoch_time_s": seconds,
    }
    try:
        artifact = _upload(trial, "learning_curve.json", json.dumps(curve).encode())
    except Exception:  # an artifact store hiccup must not hide the trial's own outcome
        log.warning("trial %d: could not upload learning_curve.json", trial.number, exc_info=True)
        return
    if artifact is not None:
        trial.set_user_attr(CURVE_ATTR, artifact)


def _upload(trial: optuna.Trial, filename: str, payload: bytes) -> str | None:
    """Upload ``payload`` as artifact ``filename`` of ``trial``; ``None`` outside a worker."""
    ctx = _context.current()
    if ctx is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_bytes(payload)
        return optuna.artifacts.upload_artifact(
            study_or_trial=trial, file_path=str(path), artifact_store=ctx.artifact_store
        )


def _keep_weights_if_best(
    trial: optuna.Trial | optuna.trial.FixedTrial,
    model: torch.nn.Module,
    params: dict[str, Any],
    value: float,
) -> None:
    """Save ``weights.pt`` when this trial ties or beats every finished trial so far, so the
    study's best trial always has weights to score on the test split.

    A :class:`optuna.trial.FixedTrial` (re-training a chosen configuration outside a study)
    has no study to be the best of, nor one to attach an artifact to: nothing is kept.
    """
    if isinstance(trial, optuna.trial.FixedTrial):
        return
    try:
        best = trial.study.best_value
    except ValueError:  # no complete trial yet
        best = None
    maximize = trial.study.direction == optuna.study.StudyDirection.MAXIMIZE
    if best is not None and (value < best if maximize else value > best):
        return
    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "params": params}, buffer)
    artifact = _upload(trial, "weights.pt", buffer.getvalue())
    if artifact is not None:
        trial.set_user_attr(WEIGHTS_ATTR, artifact)


def score_test(
    spec: StudySpec,
    trial: optuna.trial.FrozenTrial,
    artifact_store: Any,
    *,
    refit: bool | None = None,
) -> dict[str, Any]:
    """Score ``trial``'s configuration once on the test split.

    With ``refit`` (default: the study file's ``refit`` setting, on unless turned off), the
    configuration is first retrained on the whole training split, see :func:`_refit_model`;
    otherwise the trial's own saved weights (``weights.pt``) are scored.

    Returns ``{"metric": "test_accuracy", "value": 0.97, "n_test": 150, "metrics": {...},
    "refit": {"epochs": 100, "n_train": 36} or None}`` (the study's metric with ``val_``
    replaced by ``test_``; forecasting metrics are on the original scale).

    Raises:
        StorageError: no refit, and the trial has no ``weights.pt`` artifact.
    """
    params = trial_params(spec, trial.params)
    data = _for_model(load_data(spec.objective.dataset, params), spec.objective.model, params)  # type: ignore[arg-type]
    refit = bool(params["refit"]) if refit is None else refit
    if refit:
        model, whole = _refit_model(spec, trial, data)
        how: dict[str, Any] | None = {"epochs": spec.objective.epochs, "n_train": len(whole)}
    else:
        model, how = _saved_model(spec, trial, artifact_store, params, data), None
    metrics = evaluate(model, data.test, data, prefix="test_")
    name = "test_" + resolve_metric(spec).removeprefix("val_")
    return {
        "metric": name,
        "value": metrics[name],
        "n_test": len(data.test),
        "metrics": metrics,
        "refit": how,
    }


def _refit_model(
    spec: StudySpec, trial: optuna.trial.FrozenTrial, data: Splits
) -> tuple[torch.nn.Module, Part]:
    """Retrain ``trial``'s configuration on the whole training split (its fit and validation
    parts); return the model and that split.

    Why: once the search has chosen a configuration, the held-out validation part is more
    training data, and on the small UCR sets it is a fifth of all there is (7 of ArrowHead's
    36 series). The run uses the trial's seed and the study's ``epochs``, without early
    stopping, and keeps the epoch with the best metric on the whole training split (ties:
    the lower loss), as Fawaz et al. (2019) select their FCN and ResNet models: the trial's
    own best epoch, picked on a few validation series, is mostly noise.
    """
    params = trial_params(spec, trial.params)
    whole = _joined(data.train, data.val)
    data = dataclasses.replace(data, train=whole, val=whole)
    seed = _seed(spec, trial, params)
    torch.manual_seed(seed)
    model = build_model(spec.objective.model, params, data).to(_device())
    cfg = TrainConfig.from_params(
        params, metric=resolve_metric(spec), direction=spec.direction, patience=0
    )
    fit(model, data, cfg, seed=seed)
    return model, whole


def _joined(first: Part, second: Part) -> Part:
    """One part holding the samples of both (padded to the same length by the loader)."""
    lengths = None
    if first.lengths is not None and second.lengths is not None:
        lengths = torch.cat([first.lengths, second.lengths])
    return Part(torch.cat([first.x, second.x]), torch.cat([first.y, second.y]), lengths)


def _saved_model(
    spec: StudySpec,
    trial: optuna.trial.FrozenTrial,
    artifact_store: Any,
    params: dict[str, Any],
    data: Splits,
) -> torch.nn.Module:
    """The model ``trial`` trained, from its ``weights.pt`` artifact."""
    artifact = trial.user_attrs.get(WEIGHTS_ATTR)
    if artifact is None:
        raise StorageError(
            f"trial {trial.number} has no saved weights (weights.pt); only "
            "trials that were the best so far when they finished keep them"
        )
    with artifact_store.open_reader(artifact) as f:
        saved = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
    model = build_model(spec.objective.model, params, data)
    model.load_state_dict(saved["state_dict"])
    return model.to(_device())
