"""Every model x norm x placement (x pooling, direction, residual) builds, runs and learns."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F

from tuner.objectives import CNNModel, LSTMModel
from tuner.objectives.models.cnn import ConvBlock

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
@pytest.mark.parametrize("pooling", ["max", "avg", "none"])
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


@pytest.mark.parametrize(("pooling", "length_out"), [("max", 4), ("none", 16)])
def test_cnn_pooling_none_keeps_every_position(pooling: str, length_out: int) -> None:
    """Two blocks over 16 steps: max pooling halves to 8 then 4, ``none`` keeps all 16."""
    model = CNNModel(
        in_channels=2, length=16, n_outputs=3, channels=4, num_layers=2, pooling=pooling
    )
    h = model.blocks(torch.randn(5, 16, 2).transpose(1, 2))
    assert h.shape == (5, 4, length_out)


def test_cnn_even_kernels_pad_like_same_without_a_warning() -> None:
    """A conv block (no norm, no pooling: conv -> ReLU) of any kernel size keeps each side's
    length and computes what PyTorch's padding="same" does, an even kernel's extra zero at the
    end included, without raising its padding warning."""
    torch.manual_seed(0)
    blocks = {
        (dims, k): ConvBlock(dims, 2, 3, k, "none", "before_activation", None, False, 0.0)
        for dims in (1, 2)
        for k in range(1, 7)
    }
    inputs = {1: torch.randn(2, 2, 9), 2: torch.randn(2, 2, 7, 7)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns once per process: check before the reference
        outputs = {key: block(inputs[key[0]]) for key, block in blocks.items()}
        CNNModel(2, 9, 3, dims=1, kernel_size=4)(torch.randn(2, 9, 2))
    conv = {1: F.conv1d, 2: F.conv2d}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for (dims, k), block in blocks.items():
            x = inputs[dims]
            same = F.relu(conv[dims](x, block.conv.weight, block.conv.bias, padding="same"))
            assert outputs[dims, k].shape[2:] == x.shape[2:], (dims, k)
            torch.testing.assert_close(outputs[dims, k], same)


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


def test_sequence_batchnorm_normalises_over_batch_and_time_on_valid_steps() -> None:
    """batchnorm on sequences: one mean/var per feature over every valid (series, step),
    padding excluded from the statistics and left at zero."""
    from tuner.objectives.models._norm import SequenceNorm

    torch.manual_seed(0)
    x, lengths = _inputs(3, padded=True)
    x = x * 4.0 + 7.0  # far from N(0, 1)
    mask = torch.arange(9)[None, :] < lengths[:, None]
    x[~mask] = 0.0
    norm = SequenceNorm("batchnorm", 3).train()
    out = norm(x, mask)
    valid = out[mask]  # (valid steps, C)
    torch.testing.assert_close(valid.mean(dim=0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(valid.var(dim=0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    assert (out[~mask] == 0).all()
    # the same as BatchNorm1d over the flattened valid steps (not per step, not per series)
    reference = torch.nn.BatchNorm1d(3).train()
    torch.testing.assert_close(valid, reference(x[mask]))
    # without padding: statistics over all B x T steps
    full = SequenceNorm("batchnorm", 3).train()(x, None).reshape(-1, 3)
    torch.testing.assert_close(full.mean(dim=0), torch.zeros(3), atol=1e-5, rtol=0)


def test_lstm_layernorm_normalises_each_step() -> None:
    from tuner.objectives.models._norm import SequenceNorm

    x, _ = _inputs(4, padded=False)
    out = SequenceNorm("layernorm", 4)(x * 3.0 + 1.0, None)
    torch.testing.assert_close(out.mean(dim=-1), torch.zeros(4, 9), atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("dims", [1, 2])
def test_cnn_norm_placement_orders_norm_and_activation(norm: str, dims: int) -> None:
    """before_activation: ReLU last, so a block's output is >= 0; after_activation: the norm
    last, so the output is centred (negative values appear)."""
    from tuner.objectives.models.cnn import ConvBlock

    torch.manual_seed(0)
    x = torch.randn(6, 2, 8, 8) if dims == 2 else torch.randn(6, 2, 16)
    outs = {}
    for placement in ("before_activation", "after_activation"):
        block = ConvBlock(dims, 2, 4, 3, norm, placement, None, False, 0.0).train()
        outs[placement] = block(x)
    assert (outs["before_activation"] >= 0).all()
    assert (outs["after_activation"] < 0).any()
