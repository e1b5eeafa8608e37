"""Reading a study file from disk into a validated :class:`StudySpec`.

Every way a file can be wrong (missing, not UTF-8, YAML syntax, duplicate keys, an alias bomb,
a schema violation, an impossible sampler option) ends as one :class:`SpecError` whose
message starts with the file name and the field path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tuner.errors import SpecError
from tuner.spec._model import CsvData, StudySpec
from tuner.spec._optuna import build_pruner, build_sampler

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 100_000


class _StudyLoader(yaml.SafeLoader):
    """YAML's safe loader without implicit dates: a study file has no date fields, and an
    unquoted ``2026-13-45`` should reach validation as text that names its field, not fail
    inside the YAML library as an impossible date."""


_StudyLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _refuse_duplicate_keys(node: yaml.Node, path: tuple[str, ...] = ()) -> None:
    """Raise :class:`SpecError` at the first mapping that repeats a key, naming its path.

    YAML itself lets the last one win, which would silently drop half of a search space.
    Each node is visited once, so aliases cannot make this walk explode.
    """
    seen_nodes: set[int] = set()
    stack = [(node, path)]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
                if key in keys:
                    field = ".".join((*path, key))
                    line = key_node.start_mark.line + 1
                    raise SpecError(f"{field}: duplicate key (line {line}); give each key once")
                keys.add(key)
                stack.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, str(i))) for i, item in enumerate(node.value))


def _count_nodes(data: Any, limit: int) -> int:
    """Count the values reachable from ``data`` with aliases expanded, stopping at ``limit``."""
    count = 0
    stack = [data]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return count
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def parse_spec(text: str, source: str = "<study>") -> StudySpec:
    """Validate the YAML text of a study file. Raises :class:`SpecError` naming ``source``."""
    try:
        root = yaml.compose(text, Loader=_StudyLoader)  # noqa: S506 - a SafeLoader subclass
        if root is not None:
            _refuse_duplicate_keys(root)
        data = yaml.load(text, Loader=_StudyLoader)  # noqa: S506 - a SafeLoader subclass
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}: YAML syntax error at {where}{problem}") from None
    except RecursionError:
        raise SpecError(f"{source}: the document is nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # a scalar YAML resolves but Python refuses
        raise SpecError(f"{source}: YAML value error: {str(exc)[:200]}") from None
    if _count_nodes(data, MAX_NODES) > MAX_NODES:
        raise SpecError(
            f"{source}: the document expands to more than {MAX_NODES} values "
            "(YAML aliases nested too deep?)"
        )
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise SpecError(f"{source}: a study file must be a mapping of keys, but it is {kind}")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {_first_error(exc)}") from None
    try:
        build_sampler(spec)
        build_pruner(spec)
    except ValueError as exc:
        raise SpecError(f"{source}: {exc}") from None
    return spec


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate the study file at ``path``. Raises :class:`SpecError`."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such file")
    if path.is_dir():
        raise SpecError(f"{path}: is a directory, not a study file")
    raw = path.read_bytes()
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(f"{path}: larger than {MAX_FILE_BYTES} bytes; is it a study file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    return _anchor_paths(parse_spec(text, str(path)), path.parent)


def _anchor_paths(spec: StudySpec, folder: Path) -> StudySpec:
    """Make a relative ``dataset.csv`` path relative to the study file, not the shell."""
    dataset = spec.objective.dataset
    if not isinstance(dataset, CsvData) or Path(dataset.csv).is_absolute():
        return spec
    anchored = dataset.model_copy(update={"csv": str((folder / dataset.csv).resolve())})
    objective = spec.objective.model_copy(update={"dataset": anchored})
    return spec.model_copy(update={"objective": objective})


def _first_error(exc: ValidationError) -> str:
    """One line for the first validation error: ``field.path: rule (got value)``."""
    error = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] not in ("value_error", "assertion_error") and "input" in error:
        shown = repr(error["input"])
        message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    if message.startswith("search_space.") or not loc:
        return message
    return f"{loc}: {message}"
