"""Issue 6, point 6 (property-based): whatever text or structure a study file holds, the parser
returns a StudySpec or raises SpecError, never anything else; valid specs round-trip."""

from __future__ import annotations

import math
import warnings
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tuner.errors import SpecError
from tuner.spec import StudySpec, parse_spec

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Names the schema knows, so generated documents reach deep into validation.
KEYS = [
    "name", "storage", "objective", "model", "task", "dataset", "metric", "direction",
    "epochs", "search_space", "x", "lr", "opt", "type", "low", "high", "log", "step",
    "choices", "when", "sampler", "pruner", "seed", "budget", "n_trials", "timeout",
    "max_retries", "failure_window", "max_failed_share", "workers", "per_gpu", "cpu",
    "heartbeat_interval", "heartbeat_grace", "stop_grace", "n_startup_trials",
    "reduction_factor", "min_resource", "max_resource", "percentile", "p_threshold",
    "qmc_type", "gamma", "batch_size", "csv", "target", "look_back", "horizon",
]  # fmt: skip
WORDS = [
    "tpe", "random", "grid", "cmaes", "gp", "qmc", "median", "hyperband", "wilcoxon",
    "successive_halving", "percentile", "none", "int", "float", "categorical", "lstm",
    "cnn", "classification", "forecasting", "minimize", "maximize", "digits", "airline",
    "helpers.objectives:quadratic", "m:f", "a b:c", "x", "lr", "opt", "sobol", "auto",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=6),
    ),
    max_leaves=30,
)


def _parse(text: str) -> StudySpec | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return parse_spec(text, "study.yaml")
        except SpecError as exc:
            message = str(exc)
            assert message.startswith("study.yaml: ")
            assert "\n" not in message.strip(), message
            return None


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("ab:-{}[],&*!|>'\"#%@?`\n\t .0e+9")), max_size=80))
@example("[" * 5000 + "]" * 5000)  # nesting deeper than the YAML parser's recursion
@example("a: " + "{a: " * 3000 + "1" + "}" * 3000)
@example("? [a, b]\n: 1\n")  # a key that is a list
@example("? {a: 1}\n: 1\n")
@example("&a [*a]")  # an alias to itself
def test_any_text_is_a_spec_or_a_spec_error(text: str) -> None:
    _parse(text)


@SETTINGS
@given(st.text(max_size=60))
def test_any_unicode_text_is_a_spec_or_a_spec_error(text: str) -> None:
    _parse(text)


@SETTINGS
@given(documents)
def test_any_yaml_structure_is_a_spec_or_a_spec_error(document: Any) -> None:
    _parse(yaml.safe_dump(document))


VALID: dict[str, Any] = {
    "name": "s",
    "objective": {"model": "helpers.objectives:quadratic"},
    "search_space": {"x": {"low": 0.0, "high": 1.0}, "opt": {"choices": ["a", "b"]}},
    "budget": {"n_trials": 3},
}


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid study file with one value, anywhere in it, replaced by anything."""
    document = yaml.safe_load(yaml.safe_dump(VALID))
    node = document
    while True:
        key = draw(st.sampled_from(sorted(node, key=str)))
        if isinstance(node[key], dict) and node[key] and draw(st.booleans()):
            node = node[key]
            continue
        node[key] = draw(documents)
        return document


@SETTINGS
@given(mutated())
def test_any_change_to_a_valid_file_is_a_spec_or_a_spec_error(document: Any) -> None:
    _parse(yaml.safe_dump(document))


PARAM_KEYS = ["type", "low", "high", "log", "step", "choices", "when"]
params = st.dictionaries(st.sampled_from(PARAM_KEYS), st.one_of(scalars, documents), max_size=5)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["x", "lr", "opt"]), params, min_size=1, max_size=3),
       st.sampled_from(["tpe", "random", "grid", "qmc"]))  # fmt: skip
@example({"x": {"type": "int", "low": 1, "high": 10**400}}, "tpe")
@example({"x": {"low": 0, "high": 10**12}}, "grid")
@example({"x": {"low": 0.0, "high": 1e308, "step": 1e-308}}, "grid")
@example({"x": {"low": 0, "high": 10**5}, "y": {"low": 0, "high": 10**5}}, "grid")
def test_any_search_space_is_a_spec_or_a_spec_error(space: Any, sampler: str) -> None:
    document = {**VALID, "search_space": space, "sampler": {"type": sampler}}
    _parse(yaml.safe_dump(document))


def _option_names(kind: str) -> list[str]:
    import inspect

    from tuner.spec._optuna import _PRUNERS, _SAMPLERS

    table = _SAMPLERS if kind == "sampler" else _PRUNERS
    return sorted({p for f in table.values() for p in inspect.signature(f).parameters} - {"self"})


@SETTINGS
@given(
    st.sampled_from(["sampler", "pruner"]).flatmap(
        lambda kind: st.tuples(
            st.just(kind),
            st.sampled_from(
                ["tpe", "random", "cmaes", "gp", "qmc", "grid"]
                if kind == "sampler"
                else [
                    "none",
                    "median",
                    "percentile",
                    "successive_halving",
                    "hyperband",
                    "wilcoxon",
                ]  # fmt: skip
            ),
            st.dictionaries(st.sampled_from(_option_names(kind)), documents, max_size=3),
        )
    )
)
@example(("pruner", "hyperband", {"min_resource": 0}))
@example(("pruner", "hyperband", {"reduction_factor": 1}))
@example(("sampler", "tpe", {"gamma": 5}))
def test_any_sampler_or_pruner_options_are_a_spec_or_a_spec_error(case: Any) -> None:
    kind, name, options = case
    _parse(yaml.safe_dump({**VALID, kind: {"type": name, **options}}))


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def float_params(draw: st.DrawFn) -> dict[str, Any]:
    log = draw(st.booleans())
    low = draw(st.floats(min_value=1e-6, max_value=1e3) if log else finite)
    high = draw(st.floats(min_value=low, max_value=2e6).filter(lambda h: h > low))
    param: dict[str, Any] = {"low": low, "high": high}
    if log:
        param["log"] = True
    elif draw(st.booleans()):
        param["step"] = draw(st.floats(min_value=1e-3, max_value=10.0))
    return param


@st.composite
def int_params(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(-1000, 1000))
    param: dict[str, Any] = {"low": low, "high": draw(st.integers(low + 1, low + 5000))}
    if draw(st.booleans()):
        param["step"] = draw(st.integers(1, 10))
    return param


choice_params = st.builds(
    lambda values: {"choices": values},
    st.lists(
        st.one_of(st.integers(-9, 9), st.sampled_from(WORDS), st.booleans()),
        min_size=1,
        max_size=5,
        unique_by=repr,
    ),
)


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True), max_size=5,
                          unique=True))  # fmt: skip
    space = {n: draw(st.one_of(float_params(), int_params(), choice_params)) for n in names}
    categorical = [n for n, p in space.items() if "choices" in p]
    for name in names:
        parents = [c for c in categorical if names.index(c) < names.index(name)]
        if parents and draw(st.booleans()):
            parent = draw(st.sampled_from(parents))
            space[name]["when"] = {parent: space[parent]["choices"][:1]}
    return {
        "name": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)),
        "objective": {
            "model": "helpers.objectives:quadratic",
            "direction": draw(st.sampled_from(["minimize", "maximize"])),
            "epochs": draw(st.integers(1, 500)),
        },
        "search_space": space,
        "sampler": {"type": draw(st.sampled_from(["tpe", "random"])), "seed": 3},
        "pruner": {"type": draw(st.sampled_from(["none", "median", "hyperband"]))},
        "budget": {
            "n_trials": draw(st.integers(1, 10_000)),
            "max_retries": draw(st.integers(0, 5)),
        },
        "workers": {"heartbeat_interval": 1.0, "heartbeat_grace": draw(st.floats(1.5, 100))},
    }


@SETTINGS
@given(valid_specs())
def test_valid_specs_round_trip(document: dict[str, Any]) -> None:
    spec = _parse(yaml.safe_dump(document))
    assert spec is not None, document
    assert spec.name == document["name"]
    assert set(spec.search_space) == set(document["search_space"])
    for name, param in document["search_space"].items():
        parsed = spec.search_space[name]
        for key, value in param.items():
            got = getattr(parsed, key)
            assert got == value or (isinstance(value, float) and math.isclose(got, value))
    dumped = spec.model_dump(mode="json", exclude_none=True)
    again = _parse(yaml.safe_dump(dumped))
    assert again == spec
