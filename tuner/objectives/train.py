"""The one training loop behind both built-in models.

``fit`` knows nothing of Optuna: after each epoch it hands an :class:`EpochLog` and a way to
snapshot its full state to ``on_epoch``; the objective uses that hook to report to the trial,
checkpoint and prune. Data sets that fit stay on the device as whole tensors and batches are
gathered by indexing a seeded random permutation, so there is no DataLoader in the hot path.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tuner.objectives.data import Part, Splits


class NonFiniteLoss(RuntimeError):
    """The training loss (or the validation metric) became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """What the loop needs beyond the model and the data; see ``_settings.py`` for meanings."""

    epochs: int = 20
    metric: str = "val_accuracy"  # the value reported to the trial and used for early stopping
    direction: str = "maximize"
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    batch_size: int = 64
    grad_clip: float = 1.0  # max grad norm; 0 = off
    scheduler: str = "none"  # none | plateau | cosine
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    patience: int = 10  # early stopping; 0 = off
    amp: bool = True  # GPU only

    @classmethod
    def from_params(cls, params: dict[str, Any], **fixed: Any) -> TrainConfig:
        """Pick this config's fields out of a trial's merged parameters."""
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in params.items() if k in names}
        return cls(**{**values, **fixed})


@dataclass
class EpochLog:
    """One epoch's outcome. ``epoch`` counts from 1; ``metrics`` are validation metrics."""

    epoch: int
    train_loss: float
    metrics: dict[str, float]
    value: float
    lr: float
    seconds: float


@dataclass
class FitResult:
    """The best validation value (the model holds that epoch's weights) and the history."""

    best_value: float
    best_epoch: int
    history: list[EpochLog] = field(default_factory=list)
    stopped_early: bool = False


def evaluate(
    model: nn.Module, part: Part, data: Splits, batch_size: int = 1024, prefix: str = "val_"
) -> dict[str, float]:
    """Metrics of ``model`` on ``part``: accuracy and loss, or MSE/MAE/RMSE on the original
    scale (forecasting); keys carry ``prefix`` (``val_`` or ``test_``)."""
    model.eval()
    device = next(model.parameters()).device
    outs, n = [], len(part)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            x, lengths = _batch_inputs(part, torch.arange(i, min(i + batch_size, n)), device)
            outs.append(model(x, lengths).float())
    out = torch.cat(outs)  # (N, n_outputs)
    y = part.y.to(device)
    if data.is_classification:
        loss = F.cross_entropy(out, y).item()
        acc = (out.argmax(dim=1) == y).float().mean().item()
        return {f"{prefix}accuracy": acc, f"{prefix}loss": loss}
    pred = out * data.target_std + data.target_mean  # back to the original scale
    true = y * data.target_std + data.target_mean
    mse = F.mse_loss(pred, true).item()
    return {
        f"{prefix}mse": mse,
        f"{prefix}mae": F.l1_loss(pred, true).item(),
        f"{prefix}rmse": math.sqrt(mse),
        f"{prefix}loss": F.mse_loss(out, y).item(),
    }


def _batch_inputs(
    part: Part, idx: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gather a batch; padded batches are cut to their longest series."""
    idx = idx.to(part.x.device)
    x = part.x[idx]
    if part.lengths is None:
        return x.to(device, non_blocking=True), None
    lengths = part.lengths[idx]
    x = x[:, : int(lengths.max())]
    return x.to(device, non_blocking=True), lengths.to(device)


def place(part: Part, device: torch.device) -> Part:
    """Move a part to ``device`` when it fits in a quarter of free GPU memory (else stay put
    and move each batch)."""
    if device.type == "cuda":
        size = part.x.numel() * part.x.element_size()
        if size > 0.25 * torch.cuda.mem_get_info(device)[0]:
            return Part(part.x.pin_memory(), part.y, part.lengths)
    lengths = part.lengths.to(device) if part.lengths is not None else None
    return Part(part.x.to(device), part.y.to(device), lengths)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    if cfg.scheduler == "plateau":
        mode = "max" if cfg.direction == "maximize" else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    return None


def fit(
    model: nn.Module,
    data: Splits,
    cfg: TrainConfig,
    *,
    seed: int,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[EpochLog, Callable[[], dict[str, Any]]], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``data.train``, validating on ``data.val`` after every epoch.

    The best epoch is the one with the best ``cfg.metric``; among epochs with an equal value
    (accuracy on a small validation set often ties) the lower validation loss wins. Early
    stopping counts epochs without such an improvement.

    ``resume`` is a state from an earlier run's snapshot: training continues after its epoch
    with the same optimiser, schedule, early-stopping and RNG state. ``on_epoch`` may raise
    (e.g. ``optuna.TrialPruned``) to stop training. Ends with the best epoch's weights loaded.

    Raises:
        NonFiniteLoss: the mean training loss or the validation metric is NaN or infinite.
    """
    device = next(model.parameters()).device
    classification = data.is_classification
    train, val = place(data.train, device), place(data.val, device)
    opt = _optimizer(model, cfg)
    sched = _scheduler(opt, cfg)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    gen = torch.Generator().manual_seed(seed)  # batch order
    sign = 1.0 if cfg.direction == "maximize" else -1.0
    best_value, best_epoch, bad_epochs = -math.inf * sign, 0, 0
    best_loss = math.inf  # breaks ties of a coarse metric (accuracy on a few samples)
    best_weights = copy.deepcopy(model.state_dict())
    history: list[EpochLog] = []
    start = 0

    # ---- resume from a checkpoint ----
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        if sched is not None and resume.get("scheduler") is not None:
            sched.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        best_value, best_epoch, bad_epochs, best_loss = resume["best"]
        best_weights = resume["best_weights"]
        history = [EpochLog(**h) for h in resume["history"]]
        torch.set_rng_state(resume["rng"])
        gen.set_state(resume["gen"])
        if device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        start = resume["epoch"]

    def snapshot() -> dict[str, Any]:
        return {
            "epoch": len(history),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "scaler": scaler.state_dict(),
            "best": (best_value, best_epoch, bad_epochs, best_loss),
            "best_weights": best_weights,
            "history": [asdict(h) for h in history],
            "rng": torch.get_rng_state(),
            "gen": gen.get_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }

    n = len(train)
    stopped_early = False
    for epoch in range(start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        # ---- train one epoch ----
        model.train()
        perm = torch.randperm(n, generator=gen)
        if n % cfg.batch_size == 1 and n > 1:
            perm = perm[:-1]  # a batch of one breaks BatchNorm; drop that single sample
        loss_sum = torch.zeros((), device=device)
        for i in range(0, len(perm), cfg.batch_size):
            x, lengths = _batch_inputs(train, perm[i : i + cfg.batch_size], device)
            y = train.y[perm[i : i + cfg.batch_size].to(train.y.device)].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                out = model(x, lengths)
                loss = (
                    F.cross_entropy(out.float(), y)
                    if classification
                    else F.mse_loss(out.float(), y)
                )
            # ---- step, with clipping ----
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            loss_sum += loss.detach() * len(y)
        train_loss = loss_sum.item() / max(1, len(perm))  # one sync per epoch
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(f"loss became {train_loss} at epoch {epoch}")

        # ---- evaluate ----
        metrics = evaluate(model, val, data, batch_size=max(1024, cfg.batch_size))
        value = metrics[cfg.metric]
        if not math.isfinite(value):
            raise NonFiniteLoss(f"{cfg.metric} became {value} at epoch {epoch}")
        lr = opt.param_groups[0]["lr"]

        # ---- schedule, early-stopping bookkeeping ----
        val_loss = metrics["val_loss"]
        if sign * value > sign * best_value or (value == best_value and val_loss < best_loss):
            best_value, best_epoch, bad_epochs, best_loss = value, epoch, 0, val_loss
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(value)
        elif sched is not None:
            sched.step()
        history.append(EpochLog(epoch, train_loss, metrics, value, lr, time.perf_counter() - t0))

        # ---- report, checkpoint, prune (the caller's hook) ----
        if on_epoch is not None:
            on_epoch(history[-1], snapshot)

        # ---- stop early ----
        if cfg.patience > 0 and bad_epochs >= cfg.patience:
            stopped_early = True
            break

    model.load_state_dict(best_weights)
    return FitResult(best_value, best_epoch, history, stopped_early)
