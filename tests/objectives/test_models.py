"""Every model x norm x placement (x pooling, direction, residual) builds, runs and learns."""

from __future__ import annotations

import itertools

import pytest
import torch

from tuner.objectives import CNNModel, LSTMModel

# norm x placement x pooling, each once plain and once bidirectional + residual on padded input
LSTM_CASES = [
    (*combo, variant, variant, variant)
    for combo in itertools.product(
        ["none", "layernorm", "batchnorm"],
        ["input", "between", "output"],
        ["last", "mean", "attention"],
    )
    for variant in (False, True)
]


def _inputs(channels: int, padded: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    torch.manual_seed(0)
    x = torch.randn(4, 9, channels)  # (B, T, C)
    if not padded:
        return x, None
    lengths = torch.tensor([9, 5, 3, 7])
    x[torch.arange(9)[None, :] >= lengths[:, None]] = 0.0
    return x, lengths


@pytest.mark.parametrize(
    ("norm", "placement", "pooling", "bidirectional", "residual", "padded"), LSTM_CASES
)
def test_lstm_forward_backward(
    norm: str, placement: str, pooling: str, bidirectional: bool, residual: bool, padded: bool
) -> None:
    model = LSTMModel(
        input_size=3,
        n_outputs=5,
        hidden_size=6,
        num_layers=2,
        dropout=0.1,
        bidirectional=bidirectional,
        pooling=pooling,
        residual=residual,
        norm=norm,
        norm_placement=placement,
    )
    x, lengths = _inputs(3, padded)
    out = model(x, lengths)
    assert out.shape == (4, 5)
    out.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(
    ("norm", "placement"),
    list(
        itertools.product(
            ["none", "layernorm", "batchnorm"], ["before_activation", "after_activation"]
        )
    ),
)
@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("dims", [1, 2])
def test_cnn_forward_backward(
    norm: str, placement: str, pooling: str, residual: bool, dims: int
) -> None:
    model = CNNModel(
        in_channels=1 if dims == 2 else 3,
        length=8,
        n_outputs=4,
        dims=dims,
        channels=5,
        kernel_size=3,
        num_layers=4,
        dropout=0.1,
        pooling=pooling,
        norm=norm,
        norm_placement=placement,
        residual=residual,
    )
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8) if dims == 2 else torch.randn(4, 8, 3)
    out = model(x)
    assert out.shape == (4, 4)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_lstm_ignores_padding() -> None:
    """A padded series gets the same prediction as the same series alone without padding."""
    torch.manual_seed(0)
    for pooling, norm in [("last", "batchnorm"), ("mean", "layernorm"), ("attention", "none")]:
        model = LSTMModel(
            2,
            3,
            hidden_size=5,
            num_layers=2,
            bidirectional=True,
            pooling=pooling,
            norm=norm,
            norm_placement="between",
        ).eval()
        series = torch.randn(1, 4, 2)
        padded = torch.cat([series, torch.zeros(1, 6, 2)], dim=1)  # (1, 10, 2)
        alone = model(series)
        with_padding = model(padded, torch.tensor([4]))
        torch.testing.assert_close(alone, with_padding)


def test_cnn_global_average_skips_padded_steps() -> None:
    """With kernel 1 (no mixing across steps) padding cannot change the prediction."""
    torch.manual_seed(0)
    model = CNNModel(1, 16, 2, dims=1, channels=4, kernel_size=1, num_layers=2).eval()
    series = torch.randn(1, 16, 1)
    padded = torch.cat([series, torch.zeros(1, 16, 1)], dim=1)
    torch.testing.assert_close(model(series), model(padded, torch.tensor([16])))


def test_residual_lstm_adds_layer_input() -> None:
    """With residual connections the stack differs from the plain one with the same weights."""
    torch.manual_seed(0)
    plain = LSTMModel(3, 2, hidden_size=4, num_layers=3, residual=False)
    res = LSTMModel(3, 2, hidden_size=4, num_layers=3, residual=True)
    res.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 3)
    assert not torch.allclose(plain(x), res(x))
