"""The value types every data loader returns, so the models and the loop never see a format,
and the error a loader raises when a data set's files cannot be used as they are."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import torch

from tuner.errors import TunerError


class DataError(TunerError):
    """A data set's files load but cannot be trained on as they are (the message names the
    data set and what is wrong, e.g. test labels the training split never has)."""


class DataKind(str, Enum):
    """What a data set's samples are, which decides the models and tasks it can feed."""

    SEQUENCE = "sequence"  # UCR/UEA classification: (N, T, C) with a class per series
    SERIES_REGRESSION = "series_regression"  # UCR/UEA regression: (N, T, C) -> one number
    SERIES = "series"  # one long series cut into look-back windows (forecasting)
    IMAGE = "image"  # scikit-learn digits: (N, 1, 8, 8)


@dataclass(frozen=True)
class Part:
    """One split: inputs, targets and, for padded variable-length series, the true lengths.

    ``x`` is ``(N, T, C)`` for sequences and ``(N, 1, H, W)`` for images; ``y`` is ``(N,)``
    class indices (classification) or ``(N, horizon)`` scaled targets (forecasting).
    ``lengths`` is ``None`` when every sample uses all ``T`` steps.
    """

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def as_sequence(self) -> Part:
        """Images read row by row: ``(N, 1, H, W)`` becomes ``(N, H, W)`` (T=H, C=W)."""
        if self.x.dim() != 4:
            return self
        return Part(self.x[:, 0], self.y, None)


@dataclass(frozen=True)
class Splits:
    """Train, validation and test parts plus what a model needs to size itself.

    Validation is carved out of the training split only; the test part is touched once, by
    :func:`tuner.objectives.score_test`. For forecasting, targets are standardised with the
    training part's mean and std, kept here to report metrics on the original scale.
    """

    name: str
    kind: DataKind
    train: Part
    val: Part
    test: Part
    n_features: int  # C: channels per time step (image: columns of a row)
    length: int  # T: padded steps (image: rows)
    n_outputs: int  # classes, or forecast horizon
    classes: list[str] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def is_classification(self) -> bool:
        return self.kind in (DataKind.SEQUENCE, DataKind.IMAGE)
