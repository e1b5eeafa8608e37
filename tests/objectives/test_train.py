"""The one training loop (``fit``): optimisers, clipping, schedules, early stopping, no
DataLoader, best-epoch weights, seeding, and the GPU-only switches being inert on CPU."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from tuner.objectives import LSTMModel, NonFiniteLoss, TrainConfig, fit
from tuner.objectives.data import DataKind, Part, Splits
from tuner.objectives.train import _optimizer, evaluate

pytestmark = pytest.mark.usefixtures("one_thread")


def _splits(n: int = 48, padded: bool = True) -> Splits:
    """A small learnable 3-class problem: the class is the channel with the largest mean."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 10, 3, generator=g) * 0.3
    x[torch.arange(n), :, y] += 1.0
    lengths = torch.randint(4, 11, (n,), generator=g) if padded else None
    if lengths is not None:
        x[torch.arange(10)[None, :] >= lengths[:, None]] = 0.0

    def part(idx: slice) -> Part:
        return Part(x[idx], y[idx], None if lengths is None else lengths[idx])

    third = n // 3
    return Splits(
        "toy",
        DataKind.SEQUENCE,
        part(slice(0, third * 2)),
        part(slice(third * 2, n)),
        part(slice(third * 2, n)),
        n_features=3,
        length=10,
        n_outputs=3,
    )


def _model(seed: int = 0, **kwargs: Any) -> LSTMModel:
    torch.manual_seed(seed)
    return LSTMModel(3, 3, hidden_size=8, num_layers=2, dropout=0.2, **kwargs)


def _cfg(**kwargs: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 4, "batch_size": 8, "lr": 1e-2, "patience": 0}
    return TrainConfig(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("name", "cls"),
    [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)],
)
def test_optimisers_take_lr_weight_decay_and_momentum(name: str, cls: type) -> None:
    cfg = _cfg(optimizer=name, weight_decay=0.01, momentum=0.8, lr=0.02)
    opt = _optimizer(_model(), cfg)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.02 and group["weight_decay"] == 0.01
    if name == "sgd":
        assert group["momentum"] == 0.8
    result = fit(_model(), _splits(), cfg, seed=0)
    assert len(result.history) == 4
    assert all(math.isfinite(h.train_loss) for h in result.history)


def test_weight_decay_shrinks_the_weights() -> None:
    data = _splits()
    plain, decayed = _model(), _model()
    fit(plain, data, _cfg(optimizer="sgd", lr=0.05), seed=0)
    fit(decayed, data, _cfg(optimizer="sgd", lr=0.05, weight_decay=0.5), seed=0)

    def norm(m: nn.Module) -> float:
        return sum(p.detach().pow(2).sum().item() for p in m.parameters())

    assert norm(decayed) < norm(plain)


@pytest.mark.parametrize("grad_clip", [0.0, 0.25])
def test_gradients_are_clipped_to_grad_clip(
    grad_clip: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    real = nn.utils.clip_grad_norm_

    def spy(parameters: Any, max_norm: float, *args: Any, **kwargs: Any) -> torch.Tensor:
        parameters = list(parameters)
        calls.append(max_norm)
        total = real(parameters, max_norm, *args, **kwargs)
        after = torch.linalg.vector_norm(
            torch.stack(
                [torch.linalg.vector_norm(p.grad) for p in parameters if p.grad is not None]
            )
        )
        assert after <= max_norm * 1.01 or total <= max_norm
        return total

    monkeypatch.setattr(nn.utils, "clip_grad_norm_", spy)
    fit(_model(), _splits(), _cfg(epochs=1, grad_clip=grad_clip, lr=1.0), seed=0)
    steps = math.ceil(32 / 8)
    assert calls == ([grad_clip] * steps if grad_clip > 0 else [])


def test_cosine_schedule_anneals_once_per_epoch() -> None:
    cfg = _cfg(epochs=6, scheduler="cosine", lr=0.1)
    result = fit(_model(), _splits(), cfg, seed=0)
    expected = [0.05 * (1 + math.cos(math.pi * e / 6)) for e in range(6)]
    assert [h.lr for h in result.history] == pytest.approx(expected)


class _Stuck(nn.Module):
    """A model whose predictions never change: the validation metric stays flat."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(x.shape[0], 3) + 0.0 * self.w


def test_plateau_cuts_the_lr_and_early_stopping_ends_the_run() -> None:
    cfg = _cfg(epochs=50, scheduler="plateau", plateau_factor=0.5, plateau_patience=1, patience=5)
    result = fit(_Stuck(), _splits(), cfg, seed=0)
    assert result.stopped_early and result.best_epoch == 1
    assert len(result.history) == 1 + 5  # the best epoch, then `patience` epochs without gain
    # plateau_patience=1: the lr halves after every second epoch without improvement
    assert [h.lr for h in result.history] == pytest.approx([0.01, 0.01, 0.01, 0.005, 0.005, 0.0025])


def test_patience_zero_trains_every_epoch() -> None:
    result = fit(_Stuck(), _splits(), _cfg(epochs=7, patience=0), seed=0)
    assert len(result.history) == 7 and not result.stopped_early


def test_model_ends_with_the_best_epochs_weights() -> None:
    data = _splits()
    model = _model()
    result = fit(model, data, _cfg(epochs=8, lr=0.05), seed=0)
    best = result.history[result.best_epoch - 1]
    assert result.best_value == max(h.value for h in result.history) == best.value
    assert evaluate(model, data.val, data)["val_accuracy"] == pytest.approx(best.value)


def test_no_dataloader_in_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("fit must gather batches by indexing, not through a DataLoader")

    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", refuse)
    data = _splits()
    result = fit(_model(), data, _cfg(epochs=2), seed=0)
    assert len(result.history) == 2


def test_same_seed_is_bit_identical_other_seed_differs_on_cpu() -> None:
    data = _splits()
    runs = []
    for seed in (3, 3, 4):
        model = _model()
        result = fit(model, data, _cfg(epochs=3), seed=seed)
        runs.append(([h.train_loss for h in result.history], model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    assert runs[0][0] != runs[2][0]  # the seed drives the batch order


def test_amp_is_inert_on_cpu() -> None:
    """The mixed-precision branch (autocast + GradScaler) runs on CPU, disabled, unchanged."""
    data = _splits()
    losses = []
    for amp in (True, False):
        result = fit(_model(), data, _cfg(epochs=2, amp=amp, scheduler="plateau"), seed=0)
        losses.append([h.train_loss for h in result.history])
    assert losses[0] == losses[1]


def test_inf_loss_raises_non_finite_loss() -> None:
    class Exploding(_Stuck):
        def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
            return super().forward(x, lengths) * math.inf

    with pytest.raises(NonFiniteLoss, match=r"^loss became (nan|inf) at epoch 1$"):
        fit(Exploding(), _splits(), _cfg(), seed=0)


def test_val_metric_is_reported_after_every_epoch() -> None:
    seen: list[int] = []

    def on_epoch(entry: Any, snapshot: Any) -> None:
        seen.append(entry.epoch)
        assert set(entry.metrics) == {"val_accuracy", "val_loss"}
        assert entry.value == entry.metrics["val_accuracy"]
        assert snapshot()["epoch"] == entry.epoch

    fit(_model(), _splits(), _cfg(epochs=3), seed=0, on_epoch=on_epoch)
    assert seen == [1, 2, 3]
