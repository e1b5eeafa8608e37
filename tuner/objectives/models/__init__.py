"""The built-in models, built from a trial's parameter dict and the data's shape."""

from __future__ import annotations

from typing import Any

from torch import nn

from tuner.objectives.data import DataKind, Splits
from tuner.objectives.models.cnn import CNNModel
from tuner.objectives.models.lstm import LSTMModel

__all__ = ["CNNModel", "LSTMModel", "build_model", "conv_dims"]


def conv_dims(params: dict[str, Any], kind: DataKind) -> int:
    """1 or 2: the stated ``conv_dims``, else 2 for images and 1 for sequences."""
    if params.get("conv_dims") is not None:
        return int(params["conv_dims"])
    return 2 if kind is DataKind.IMAGE else 1


def build_model(model: str, params: dict[str, Any], data: Splits) -> nn.Module:
    """An untrained ``lstm`` or ``cnn`` sized for ``data``, configured by ``params``.

    Images feed the LSTM and the 1-D CNN row by row (8 steps of 8 features).
    """
    if model == "lstm":
        return LSTMModel(
            input_size=data.n_features,
            n_outputs=data.n_outputs,
            hidden_size=int(params["hidden_size"]),
            num_layers=int(params["num_layers"]),
            dropout=float(params["dropout"]),
            bidirectional=bool(params["bidirectional"]),
            pooling=str(params["pooling"]),
            residual=bool(params["residual"]),
            norm=str(params["norm"]),
            norm_placement=str(params["norm_placement"]),
        )
    dims = conv_dims(params, data.kind)
    return CNNModel(
        in_channels=1 if dims == 2 else data.n_features,
        length=data.length,
        n_outputs=data.n_outputs,
        dims=dims,
        channels=int(params["channels"]),
        kernel_size=int(params["kernel_size"]),
        num_layers=int(params["num_layers"]),
        dropout=float(params["dropout"]),
        pooling=str(params["pooling"]),
        norm=str(params["norm"]),
        norm_placement=str(params["norm_placement"]),
        residual=bool(params["residual"]),
    )
