"""check_builtin: bad study files are rejected at validation with a message naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from builtin_helpers import build_spec

from tuner.errors import SpecError
from tuner.objectives import check_builtin
from tuner.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
LSTM = {"model": "lstm", "task": "classification", "dataset": "gun_point"}
CNN = {"model": "cnn", "task": "classification", "dataset": "digits"}
FORECAST = {"model": "lstm", "task": "forecasting", "dataset": "airline", "metric": "val_mse"}

BAD: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "model",
        {**LSTM, "model": "gru"},
        {},
        "objective.model: unknown built-in model 'gru'; built-ins: lstm, cnn",
    ),
    (
        "no task",
        {"model": "lstm", "dataset": "gun_point"},
        {},
        "objective.task: model lstm needs a task",
    ),
    (
        "no dataset",
        {"model": "lstm", "task": "classification"},
        {},
        "objective.dataset: a built-in model needs a dataset; available for classification: "
        "ACSF1, ArrowHead",
    ),
    (
        "unknown dataset",
        {**LSTM, "dataset": "mnist"},
        {},
        "objective.dataset: unknown data set 'mnist'; available for classification: ACSF1",
    ),
    (
        "series as classification",
        {**LSTM, "dataset": "airline"},
        {},
        "objective.dataset: airline is a forecasting data set, not classification",
    ),
    (
        "sequences as forecasting",
        {**FORECAST, "dataset": "GunPoint"},
        {},
        "objective.dataset: GunPoint is a classification data set, not forecasting",
    ),
    (
        "csv for classification",
        {**LSTM, "dataset": {"csv": "x.csv", "target": "y"}},
        {},
        "objective.dataset: a CSV series",
    ),
    (
        "csv missing",
        {**FORECAST, "dataset": {"csv": "/nonexistent.csv", "target": "y"}},
        {},
        "objective.dataset.csv: file not found: /nonexistent.csv",
    ),
    (
        "metric of other task",
        {**LSTM, "metric": "val_mse"},
        {},
        "objective.metric: 'val_mse' is not a metric of task classification; choose one of: "
        "val_accuracy, val_loss",
    ),
    (
        "metric typo",
        {**FORECAST, "metric": "mse"},
        {},
        "objective.metric: 'mse' is not a metric of task forecasting",
    ),
    (
        "direction",
        {**LSTM, "metric": "val_accuracy", "direction": "minimize"},
        {},
        "objective.direction: val_accuracy must be maximized, got minimize",
    ),
    (
        "unknown setting",
        {**LSTM, "batchsize": 32},
        {},
        "objective.batchsize: unknown setting for model lstm, task classification; allowed: amp,",
    ),
    ("cnn setting on lstm", {**LSTM, "channels": 32}, {}, "objective.channels: unknown setting"),
    (
        "bad setting value",
        {**LSTM, "optimizer": "rmsprop"},
        {},
        "objective.optimizer: 'rmsprop' is not one of ['adam', 'adamw', 'sgd']",
    ),
    ("dropout 1", {**LSTM, "dropout": 1.0}, {}, "objective.dropout: must be < 1 (got 1.0)"),
    ("batch 1", {**LSTM, "batch_size": 1}, {}, "objective.batch_size: must be >= 2 (got 1)"),
    (
        "unknown param",
        LSTM,
        {"hiden_size": {"low": 8, "high": 64}},
        "search_space.hiden_size: unknown parameter for model lstm, task classification; "
        "allowed: amp, batch_size, bidirectional, dropout, epochs, grad_clip, hidden_size",
    ),
    (
        "fixed setting searched",
        LSTM,
        {"seed": {"low": 0, "high": 5}},
        "search_space.seed: is fixed for a whole study",
    ),
    (
        "groupnorm",
        CNN,
        {"norm": {"choices": ["none", "groupnorm"]}},
        "search_space.norm: choice 'groupnorm' is not one of ['none', 'batchnorm', 'layernorm']",
    ),
    (
        "lstm placement for cnn",
        CNN,
        {"norm_placement": {"choices": ["input", "between"]}},
        "search_space.norm_placement: choice 'input' is not one of ['before_activation', "
        "'after_activation']",
    ),
    (
        "cnn placement for lstm",
        LSTM,
        {"norm_placement": {"choices": ["before_activation"]}},
        "search_space.norm_placement: choice 'before_activation' is not one of ['input', "
        "'between', 'output']",
    ),
    (
        "float hidden",
        LSTM,
        {"hidden_size": {"low": 8.0, "high": 64.5}},
        "search_space.hidden_size: must be an integer range",
    ),
    (
        "range for choice",
        LSTM,
        {"pooling": {"low": 0, "high": 2}},
        "search_space.pooling: takes choices (last | mean | attention), not a range",
    ),
    ("lr bound", LSTM, {"lr": {"low": 0.0, "high": 0.1}}, "search_space.lr.low: must be > 0"),
    (
        "layernorm on one feature",
        LSTM,
        {
            "norm": {"choices": ["none", "layernorm"]},
            "norm_placement": {"choices": ["input", "between"], "when": {"norm": ["layernorm"]}},
        },
        "search_space.norm_placement: layernorm at placement 'input' would normalise GunPoint's "
        "single input feature to zero",
    ),
    (
        "layernorm between on hidden_size 1",
        {**LSTM, "hidden_size": 1, "norm": "layernorm"},
        {},
        "objective.hidden_size: layernorm at placement 'between' would normalise the single "
        "output of a unidirectional LSTM with hidden_size=1 to zero; use hidden_size >= 2 or "
        "bidirectional: true, or batchnorm",
    ),
    (
        "layernorm at output, hidden_size range from 1",
        {**LSTM, "norm": "layernorm", "norm_placement": "output"},
        {"hidden_size": {"low": 1, "high": 64}},
        "search_space.hidden_size: layernorm at placement 'output' would normalise the single "
        "output of a unidirectional LSTM with hidden_size=1",
    ),
    (
        "layernorm sampled, hidden_size 1, bidirectional sampled",
        {**LSTM, "hidden_size": 1},
        {
            "bidirectional": {"choices": [True, False]},
            "norm": {"choices": ["batchnorm", "layernorm"]},
        },
        "objective.hidden_size: layernorm at placement 'between' would normalise the single output",
    ),
    (
        "cnn layernorm on one channel",
        {**CNN, "channels": 1, "norm": "layernorm"},
        {},
        "objective.channels: layernorm normalises the channels at each position, and "
        "channels=1 normalises to zero; use channels >= 2, or norm batchnorm or none",
    ),
    (
        "cnn layernorm sampled, channels choices with 1",
        {**CNN, "dataset": "gun_point"},
        {"channels": {"choices": [1, 8]}, "norm": {"choices": ["none", "layernorm"]}},
        "search_space.channels: layernorm normalises the channels at each position, and channels=1",
    ),
    (
        "2-D conv on sequences",
        {**CNN, "dataset": "gun_point", "conv_dims": 2},
        {},
        "objective.conv_dims: 2-D convolution needs an image data set (digits); GunPoint is a "
        "sequence data set",
    ),
    (
        "look_back too long",
        FORECAST,
        {"look_back": {"low": 12, "high": 120}},
        "search_space.look_back: series airline has 144 steps, too few for look_back=120, "
        "horizon=1 (needs at least",
    ),
    (
        "look_back on regression",
        {**FORECAST, "dataset": "tecator", "look_back": 10},
        {},
        "objective.look_back: Tecator maps each whole series to one value",
    ),
]


@pytest.mark.parametrize(
    ("objective", "space", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_rejects(objective: dict[str, Any], space: dict[str, Any], message: str) -> None:
    spec = build_spec(objective, space)
    with pytest.raises(SpecError) as info:
        check_builtin(spec)
    assert str(info.value).startswith(message), str(info.value)


GOOD: list[tuple[dict[str, Any], dict[str, Any]]] = [
    # batchnorm at the input is fine for one feature; layernorm only where it is never 'input'
    (
        LSTM,
        {
            "norm": {"choices": ["none", "layernorm", "batchnorm"]},
            "norm_placement": {"choices": ["input", "between"], "when": {"norm": ["batchnorm"]}},
        },
    ),
    ({**LSTM, "dataset": "JapaneseVowels", "norm": "layernorm", "norm_placement": "input"}, {}),
    # a LayerNorm over 2 or more features learns: bidirectional doubles hidden_size 1 to 2,
    # batchnorm over one feature is fine, and hidden_size 1 only where norm is not layernorm
    ({**LSTM, "hidden_size": 1, "bidirectional": True, "norm": "layernorm"}, {}),
    ({**LSTM, "hidden_size": 1, "norm": "batchnorm", "norm_placement": "output"}, {}),
    (
        {**LSTM, "norm": "layernorm"},
        {"hidden_size": {"choices": [1, 8]}, "bidirectional": {"choices": [True]}},
    ),
    (
        CNN,
        {
            "norm": {"choices": ["batchnorm", "layernorm"]},
            "channels": {"choices": [1, 16], "when": {"norm": ["batchnorm"]}},
        },
    ),
    ({**CNN, "channels": 2, "norm": "layernorm"}, {}),
    ({**CNN, "conv_dims": 1}, {}),  # digits read row by row
    ({**CNN, "dataset": "basic-motions"}, {"kernel_size": {"choices": [3, 5, 7]}}),
    ({**FORECAST, "dataset": "tecator"}, {}),  # series regression: one value per series
    (
        {**FORECAST, "dataset": "lynx", "look_back": 12, "horizon": 3},
        {"epochs": {"low": 2, "high": 9}},
    ),
    ({"model": "lstm", "task": "classification", "dataset": "digits"}, {}),  # no metric given
]


@pytest.mark.parametrize(("objective", "space"), GOOD)
def test_accepts(objective: dict[str, Any], space: dict[str, Any]) -> None:
    check_builtin(build_spec(objective, space))


def test_csv_series(tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    path.write_text("month,sales\n" + "".join(f"{i},{i * 2.5}\n" for i in range(60)))
    good = {**FORECAST, "dataset": {"csv": str(path), "target": "sales", "look_back": 6}}
    check_builtin(build_spec(good))
    with pytest.raises(SpecError, match=r"^objective.dataset.target: column 'revenue' not in"):
        check_builtin(build_spec({**good, "dataset": {"csv": str(path), "target": "revenue"}}))
    with pytest.raises(SpecError, match=r"^objective.dataset.look_back: series .* has 60 steps"):
        check_builtin(
            build_spec(
                {**FORECAST, "dataset": {"csv": str(path), "target": "sales", "look_back": 50}}
            )
        )


@pytest.mark.parametrize("name", ["quick", "lstm", "cnn", "lstm_forecast"])
def test_shipped_study_files_pass(name: str) -> None:
    spec = load_spec(REPO / "search_spaces" / f"{name}.yaml")
    assert spec.objective.model in ("lstm", "cnn")
    assert "storage" not in (REPO / "search_spaces" / f"{name}.yaml").read_text()
    check_builtin(spec)


def test_issue_example_passes() -> None:
    spec = build_spec(
        {
            "model": "lstm",
            "task": "classification",
            "dataset": "japanese_vowels",
            "metric": "val_accuracy",
            "direction": "maximize",
            "epochs": 30,
            "batch_size": 64,
        },
        {
            "lr": {"low": 1.0e-4, "high": 1.0e-1, "log": True},
            "hidden_size": {"choices": [32, 64, 128, 256]},
            "num_layers": {"low": 1, "high": 3},
            "dropout": {"low": 0.0, "high": 0.5},
            "norm": {"choices": ["none", "layernorm", "batchnorm"]},
            "norm_placement": {
                "choices": ["input", "between", "output"],
                "when": {"norm": ["layernorm", "batchnorm"]},
            },
        },
    )
    check_builtin(spec)


def test_reference_documents_every_setting() -> None:
    from tuner.objectives import SETTINGS

    text = (REPO / "docs" / "OBJECTIVES.md").read_text()
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| `")]
    for setting in SETTINGS:
        default = "null" if setting.default is None else str(setting.default).lower()
        models = "both" if len(setting.models) == 2 else setting.models[0]
        tasks = "both" if len(setting.tasks) == 2 else setting.tasks[0]
        matching = [
            cells
            for cells in rows
            if cells[0].strip() == f"`{setting.name}`" and cells[1].strip() == models
        ]
        assert len(matching) == 1, (setting.name, models)
        _, _, row_tasks, row_default, allowed, searchable, _ = (c.strip() for c in matching[0])
        assert row_tasks == tasks, setting.name
        assert row_default == f"`{default}`", setting.name
        assert searchable == ("yes" if setting.searchable else "no"), setting.name
        if setting.kind == "choice":
            assert allowed.startswith(", ".join(f"`{c}`" for c in setting.choices)), setting.name
        elif setting.kind == "bool":
            assert allowed == "`true`, `false`", setting.name
        elif setting.high is not None:
            assert allowed.startswith(setting.describe()), (setting.name, allowed)
        else:
            assert allowed == f"{setting.kind} ≥ {setting.low:g}", (setting.name, allowed)
