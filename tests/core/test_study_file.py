"""Study files: what is accepted, and the one message each kind of mistake produces."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tuner.cli import app
from tuner.spec import ParamType, parse_spec

runner = CliRunner()

VALID = {
    "name": "ok",
    "objective": {"model": "helpers.objectives:quadratic", "metric": "loss"},
    "search_space": {
        "lr": {"low": 1.0e-4, "high": 1.0e-1, "log": True},
        "hidden_size": {"choices": [32, 64]},
        "num_layers": {"low": 1, "high": 3},
        "dropout": {"low": 0.0, "high": 0.5, "step": 0.1},
        "norm": {"choices": ["none", "layernorm"]},
        "norm_placement": {"choices": ["input", "output"], "when": {"norm": ["layernorm"]}},
    },
    "budget": {"n_trials": 3},
}


def test_types_follow_from_the_keys() -> None:
    spec = parse_spec(yaml.safe_dump(VALID))
    kinds = {name: p.kind for name, p in spec.search_space.items()}
    assert kinds["lr"] is ParamType.FLOAT
    assert kinds["num_layers"] is ParamType.INT
    assert kinds["hidden_size"] is ParamType.CATEGORICAL
    assert spec.direction == "minimize"


def test_conditional_parameter_is_sampled_only_when_its_condition_holds() -> None:
    import optuna

    from tuner.spec import suggest

    spec = parse_spec(yaml.safe_dump(VALID))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    for _ in range(30):
        trial = study.ask()
        params = suggest(trial, spec.search_space)
        seen.append(params)
        assert ("norm_placement" in params) == (params["norm"] == "layernorm")
    assert any("norm_placement" in p for p in seen) and any("norm_placement" not in p for p in seen)


def _with(path: str, value: object) -> dict:
    document = yaml.safe_load(yaml.safe_dump(VALID))
    *parents, last = path.split(".")
    node = document
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return document


_DELETE = object()

BAD = [
    (
        _with("search_space.dropout.high", -0.5),
        "search_space.dropout: low must be < high (got low=0.0, high=-0.5)",
    ),
    (_with("search_space.lr.low", 0.0), "search_space.lr: log scale needs low > 0 (got low=0.0)"),
    (
        _with("search_space.hidden_size.choices", []),
        "search_space.hidden_size: choices must be a non-empty list",
    ),
    (_with("budget.n_trials", "many"), "budget.n_trials: Input should be a valid integer"),
    (_with("budget.n_trials", -3), "budget.n_trials: Input should be greater than or equal to 1"),
    (_with("budget", {}), "budget: needs n_trials, timeout or both"),
    (_with("sampler", {"type": "annealing"}), "sampler.type: Input should be 'tpe', 'random'"),
    (
        _with("pruner", {"type": "hyperband", "min_resources": 1}),
        "pruner: unknown option 'min_resources' for pruner type 'hyperband'; allowed:",
    ),
    (_with("epochs", 3), "unknown key 'epochs'; allowed: budget, name, objective"),
    (
        _with("search_space.norm_placement.when", {"nrm": ["layernorm"]}),
        "search_space.norm_placement.when.nrm: refers to unknown parameter 'nrm'",
    ),
    (
        _with("search_space.norm.when", {"norm_placement": ["input"]}),
        "conditions form a cycle (norm -> norm_placement -> norm)",
    ),
    (_with("name", "has spaces"), "name: must be 1-100 letters, digits"),
    (
        _with("objective.model", "not a module:path:here"),
        "objective.model: a user objective is written 'package.module:function'",
    ),
    (_with("objective.batch_size", 3), "unknown key 'batch_size' for a user objective"),
    (_with("search_space.num_layers.step", 0), "search_space.num_layers: step must be > 0"),
]


@pytest.mark.parametrize(("document", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_study_file_gives_one_line_naming_the_field(
    tmp_path: Path, document: dict, message: str
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(document))
    journal = tmp_path / "journal.log"
    result = runner.invoke(app, ["launch", str(path), "--storage", f"journal://{journal}"])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {path}: ")
    assert message in result.output
    assert result.output.count("\n") == 1, "one line, no traceback"
    assert not journal.exists(), "nothing may be written to the storage"


def test_unknown_user_module_is_reported_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_with("objective.model", "nowhere.to_be:found")))
    result = runner.invoke(
        app, ["launch", str(path), "--storage", f"journal://{tmp_path / 'j.log'}"]
    )
    assert result.exit_code == 2
    assert "objective.model: cannot import 'nowhere.to_be'" in result.output


def test_csv_paths_are_relative_to_the_study_file(tmp_path: Path) -> None:
    from tuner.spec import load_spec

    folder = tmp_path / "studies"
    folder.mkdir()
    path = folder / "forecast.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "f",
                "objective": {
                    "model": "lstm",
                    "task": "forecasting",
                    "dataset": {"csv": "data/sales.csv", "target": "y"},
                },
                "budget": {"n_trials": 1},
            }
        )
    )
    assert load_spec(path).objective.dataset.csv == str(folder / "data" / "sales.csv")
