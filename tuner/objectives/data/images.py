"""scikit-learn's 8x8 handwritten digits, the image data set of the 2-D CNN.

The test part is a fixed, stratified 20 % of the 1,797 images (seed 0), identical for every
study; validation is carved out of the rest. Pixels (0-16) are scaled to 0-1.
"""

from __future__ import annotations

import numpy as np
import torch

from tuner.objectives.data._split import stratified_split
from tuner.objectives.data._types import DataKind, Part, Splits

TEST_FRACTION = 0.2
TEST_SEED = 0


def load_digits_splits(val_fraction: float, split_seed: int = 0) -> Splits:
    """Digits as ``(N, 1, 8, 8)`` images with integer class targets 0-9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    y = digits.target.astype(np.int64)
    rest, test = stratified_split(y, len(y), TEST_FRACTION, TEST_SEED)
    fit, val = stratified_split(y[rest], len(rest), val_fraction, split_seed)
    fit, val = rest[fit], rest[val]

    def part(index: np.ndarray) -> Part:
        return Part(torch.from_numpy(x[index]), torch.from_numpy(y[index]))

    return Splits(
        name="digits",
        kind=DataKind.IMAGE,
        train=part(fit),
        val=part(val),
        test=part(test),
        n_features=8,
        length=8,
        n_outputs=10,
        classes=[str(i) for i in range(10)],
    )
