"""Data sets: every shipped one is usable by name; splits and scaling never see the test part."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tuner.errors import TunerError
from tuner.objectives.data import (
    DataError,
    DataKind,
    DatasetInfo,
    available,
    load_data,
    lookup,
    sktime_data_dir,
)
from tuner.objectives.data.forecasting import make_splits
from tuner.objectives.data.ucr import load_ucr
from tuner.objectives.train import evaluate

PARAMS = {"val_fraction": 0.2, "test_fraction": 0.2, "look_back": 24, "horizon": 1}


@pytest.mark.parametrize(
    "name",
    ["JapaneseVowels", "japanese_vowels", "japanesevowels", "Japanese-Vowels", "JAPANESE_VOWELS"],
)
def test_names_match_ignoring_case_underscores_hyphens(name: str) -> None:
    info = lookup(name)
    assert info is not None and info.name == "JapaneseVowels"


def test_every_shipped_data_file_resolves_by_name() -> None:
    root = sktime_data_dir()
    problems = {p.name[: -len("_TRAIN.ts")] for p in root.glob("*/*_TRAIN.ts")}
    assert {
        "GunPoint",
        "ArrowHead",
        "ItalyPowerDemand",
        "BasicMotions",
        "JapaneseVowels",
    } <= problems
    for name in problems:
        info = lookup(name)
        assert info is not None, name
        assert info.kind in (DataKind.SEQUENCE, DataKind.SERIES_REGRESSION)
    csv_files = list(root.glob("*/*.csv"))
    assert csv_files
    csv_paths = {i.path for i in map(lookup, available("forecasting")) if i is not None}
    assert set(csv_files) <= csv_paths
    assert lookup("airline") is not None and lookup("lynx") is not None
    assert lookup("digits") is not None and lookup("nope") is None


def test_classification_list_is_the_ucr_problems_plus_digits() -> None:
    names = available("classification")
    assert "digits" in names and "GunPoint" in names and "airline" not in names
    assert "Tecator" in available("forecasting")  # a regression problem: one value per series


@pytest.mark.parametrize(
    ("name", "channels", "classes", "unequal"),
    [
        ("BasicMotions", 6, 4, False),
        ("JapaneseVowels", 12, 9, True),
        ("PLAID", 1, 11, True),
        ("GunPoint", 1, 2, False),
    ],
)
def test_ucr_loads_with_standard_splits(
    name: str, channels: int, classes: int, unequal: bool
) -> None:
    data = load_data(name, PARAMS)
    n_train_file = {"BasicMotions": 40, "JapaneseVowels": 270, "PLAID": 537, "GunPoint": 50}
    assert len(data.train) + len(data.val) == n_train_file[name]  # validation from train only
    assert data.n_features == channels and data.n_outputs == classes
    assert data.train.x.shape[1:] == (data.length, channels)
    assert (data.train.lengths is not None) is unequal
    if unequal:
        lengths = data.train.lengths
        assert lengths.min() < data.length  # really padded
        padded = torch.arange(data.length)[None, :] >= lengths[:, None]
        assert (data.train.x[padded] == 0).all()
    # stratified: every class is in both the fitting and the validation part
    assert set(data.val.y.tolist()) == set(data.train.y.tolist()) == set(range(classes))


def _write_ts(path: Path, rows: list[tuple[list[float], str]], labels: str) -> None:
    header = (
        "@problemName Tiny\n@timeStamps false\n@missing false\n@univariate true\n"
        f"@equalLength true\n@seriesLength 4\n@classLabel true {labels}\n@data\n"
    )
    body = "".join(",".join(map(str, values)) + f":{label}\n" for values, label in rows)
    path.write_text(header + body)


def test_test_label_unseen_in_training_is_refused_when_loading(tmp_path: Path) -> None:
    """A test label the training split lacks has no class index: loading says so, naming the
    data set and the labels, instead of scoring the best trial against class -1 at the end."""
    train = [([i, i + 1.0, i + 2.0, i + 3.0], "ab"[i % 2]) for i in range(10)]
    _write_ts(tmp_path / "Tiny_TRAIN.ts", train, "a b c d")
    test = [([1.0, 2.0, 3.0, 4.0], label) for label in ("a", "d", "b", "c")]
    _write_ts(tmp_path / "Tiny_TEST.ts", test, "a b c d")
    info = DatasetInfo("Tiny", DataKind.SEQUENCE, tmp_path / "Tiny", 1, 4)
    with pytest.raises(DataError) as error:
        load_ucr(info, val_fraction=0.2)
    assert isinstance(error.value, TunerError)
    assert str(error.value) == (
        "data set Tiny: test labels 'c', 'd' never occur in the training split "
        "(its classes: 'a', 'b')"
    )
    _write_ts(tmp_path / "Tiny_TEST.ts", test[::2], "a b c d")  # only a and b: loads
    data = load_ucr(info, val_fraction=0.2)
    assert data.classes == ["a", "b"] and data.test.y.tolist() == [0, 1]


def test_validation_split_is_the_same_every_time() -> None:
    a, b = load_data("ArrowHead", PARAMS), load_data("arrow_head", PARAMS)
    assert torch.equal(a.val.x, b.val.x)


def test_digits_have_a_fixed_test_split() -> None:
    data = load_data("digits", PARAMS)
    assert data.train.x.shape[1:] == (1, 8, 8)
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert len(data.test) == 359


def test_forecasting_scaler_is_fitted_on_the_training_part_only() -> None:
    # 100 steps: test = last 20, validation = 16 before them, train = first 64
    series = np.concatenate([np.full(64, 10.0), np.full(36, 1000.0)])  # jump after train part
    series[:64] += np.arange(64) % 2  # train part: mean 10.5, std 0.5
    data = make_splits("s", series, look_back=5, horizon=2, val_fraction=0.2, test_fraction=0.2)
    assert data.target_mean == pytest.approx(10.5)
    assert data.target_std == pytest.approx(0.5)
    # no training target reaches past the training part
    assert (data.train.y * data.target_std + data.target_mean).max() < 12
    assert len(data.train) + len(data.val) + len(data.test) == 100 - 5 - 2 + 1


def test_forecasting_metrics_are_on_the_original_scale() -> None:
    data = load_data("airline", PARAMS)

    class Constant(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
            return torch.zeros(x.shape[0], 1) + self.w  # predicts the training mean

    metrics = evaluate(Constant(), data.test, data, prefix="test_")
    passengers = np.asarray(
        [
            float(line.split(",")[1])
            for line in (sktime_data_dir() / "Airline" / "Airline.csv").read_text().splitlines()[1:]
        ]
    )
    n_train = len(data.train) + 24  # windows + the first look-back
    truth = passengers[-len(data.test) :]
    expected = np.mean((truth - passengers[:n_train].mean()) ** 2)
    assert metrics["test_mse"] == pytest.approx(expected, rel=1e-4)
    assert metrics["test_rmse"] == pytest.approx(np.sqrt(expected), rel=1e-4)
    assert metrics["test_mae"] == pytest.approx(
        np.mean(np.abs(truth - passengers[:n_train].mean())), rel=1e-4
    )


def _shipped() -> list[str]:
    """Every data file sktime installs, by the name tuner lists it under."""
    root = sktime_data_dir()
    names = [p.name[: -len("_TRAIN.ts")] for p in root.glob("*/*_TRAIN.ts")]
    paths = {i.path: i.name for i in map(lookup, available("forecasting")) if i is not None}
    names += [paths[p] for p in [*root.glob("*/*.csv"), *root.glob("*/*.tsf")]]
    return sorted(names)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("name", _shipped())
def test_every_shipped_data_set_loads_and_feeds_both_models(name: str) -> None:
    """Usable by name means: it loads, validation comes from the training split, the test
    labels are classes the model knows, and both models build from it and run."""
    from tuner.objectives._builtin import _for_model
    from tuner.objectives._settings import defaults
    from tuner.objectives.data.forecasting import min_length
    from tuner.objectives.models import build_model

    info = lookup(name)
    assert info is not None
    for variant in (name.lower(), name.upper(), _snake(name), _snake(name).replace("_", "-")):
        assert lookup(variant) is info, variant
    params = dict(PARAMS)
    while info.kind is DataKind.SERIES and info.length < min_length(
        params["look_back"], 1, 0.2, 0.2
    ):
        params["look_back"] //= 2  # short series (longley, the .tsf fixtures)
    data = load_data(name, params)
    assert len(data.train) >= 2 and len(data.val) >= 1 and len(data.test) >= 1
    for part in (data.train, data.val, data.test):
        assert torch.isfinite(part.x).all()
    if info.kind in (DataKind.SEQUENCE, DataKind.SERIES_REGRESSION):
        text = info.path.with_name(f"{info.path.name}_TRAIN.ts").read_text(errors="replace")
        body = re.split(r"(?im)^@data\s*$", text, maxsplit=1)[1]
        n_train = sum(1 for line in body.splitlines() if line.strip())
        assert len(data.train) + len(data.val) == n_train  # validation from train only
        assert data.train.x.shape[1:] == (info.length, info.channels)
    if data.is_classification:
        assert set(data.test.y.tolist()) <= set(range(data.n_outputs))
    for model in ("lstm", "cnn"):
        p = {**defaults(model, info.task), **params, "hidden_size": 4, "channels": 4}
        d = _for_model(data, model, p)
        net = build_model(model, p, d)
        x, lengths = d.train.x[:4], None if d.train.lengths is None else d.train.lengths[:4]
        out = net(x, lengths)
        assert out.shape == (len(x), d.n_outputs) and torch.isfinite(out).all()
        out.sum().backward()
