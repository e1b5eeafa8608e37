"""docker-compose.yml's services, run as local processes against the local PostgreSQL.

No Docker engine runs here, so this test takes from the compose file what each container
would run, its entrypoint, command and environment, interpolates a .env made from
.env.example, and maps onto this machine what only exists inside Compose: the host
``postgres`` becomes the local server, /app (the image's WORKDIR) the repository, each named
volume a temporary folder, and the dashboard's 0.0.0.0:8080 a free port on 127.0.0.1. The
postgres service is the local server itself: its init scripts and its healthcheck run
against it, in a throwaway role and database dropped at the end.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import psycopg2
import pytest
import yaml
from compose_support import REPO, env_from_example, interpolate, load_compose
from helpers.study import PG_HOST, PG_PORT, PG_USER, admin_sql

from tuner.storage import open_storage

N_TRIALS = 12
N_WORKERS = 3
CONTAINER_PG = "postgres:5432"


@dataclass
class Stack:
    """The running services and what the test needs to check them."""

    env: dict[str, str]
    services: dict[str, Any]
    url: str
    study_name: str
    dashboard: str
    init_output: str
    healthcheck: subprocess.CompletedProcess[str]
    workers: list[subprocess.Popen[str]] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _volume_folders(service: dict[str, Any], root: Path) -> dict[str, str]:
    """Container path -> local folder, for the service's named volumes and bind mounts."""
    folders = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            folders[target] = str(REPO / source)
        else:
            folders[target] = str(root / source)
            (root / source).mkdir(parents=True, exist_ok=True)
    return folders


def _localize(text: str, folders: dict[str, str]) -> str:
    """One value from the compose file, with Compose's names mapped onto this machine."""
    text = text.replace(f"@{CONTAINER_PG}/", f"@{PG_HOST}:{PG_PORT}/")
    for target, local in folders.items():
        if text == target or text.startswith(target + "/"):
            return local + text[len(target) :]
    if text.startswith("/app/"):
        return str(REPO / text[len("/app/") :])
    return text


def _process(service: dict[str, Any], root: Path) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that the service's container would run with."""
    folders = _volume_folders(service, root)
    argv = [_localize(a, folders) for a in [*service.get("entrypoint", []), *service["command"]]]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TUNER_", "CUDA_", "PG"))
    }
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(Path(__file__).parent),  # where the study's objective module lives
        "TUNER_HOME": str(root / "home"),
        "PYTHONUNBUFFERED": "1",
    }
    env |= {key: _localize(str(value), folders) for key, value in service["environment"].items()}
    return argv, env


def _load_study(name: str, url: str) -> optuna.Study:
    """The stored study, opened as tuner opens the compose file's URL (whatever its scheme)."""
    return optuna.load_study(study_name=name, storage=open_storage(url))


def _get(url: str, token: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                response.headers.get("Content-Type", ""),
                response.read().decode(),
            )
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def _wait_for_http(url: str, process: subprocess.Popen[str], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the dashboard exited with {process.returncode}:\n{log.read_text()}")
        try:
            _get(url)
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"the dashboard did not answer within {seconds} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("compose-local")
    suffix = uuid.uuid4().hex[:10]
    study_name = f"deploy-{suffix}"
    study_file = root / "study.yaml"
    study_file.write_text(
        yaml.safe_dump(
            {
                "name": study_name,
                "objective": {"model": "tiny_objective:objective", "direction": "minimize"},
                "search_space": {"x": {"low": -10.0, "high": 10.0}},
                "sampler": {"type": "random", "seed": 0},
                "budget": {"n_trials": N_TRIALS},
                "workers": {"cpu": 1, "heartbeat_interval": 0.5, "heartbeat_grace": 5.0},
            },
            sort_keys=False,
        )
    )
    env = env_from_example(
        TUNER_DB_USER=f"tuner_deploy_{suffix}",
        TUNER_DB_NAME=f"tuner_deploy_{suffix}",
        TUNER_STUDY=str(study_file),
    )
    services = interpolate(load_compose()["services"], env)
    role, database = env["TUNER_DB_USER"], env["TUNER_DB_NAME"]

    # postgres: its init scripts, as the image's entrypoint runs them, then its healthcheck.
    postgres = services["postgres"]
    pg_env = {**os.environ, **{k: str(v) for k, v in postgres["environment"].items()}}
    init_dir = Path(_volume_folders(postgres, root)["/docker-entrypoint-initdb.d"])
    processes: list[subprocess.Popen[str]] = []
    try:
        init_output = ""
        for script in sorted(init_dir.glob("*.sql")):
            result = subprocess.run(
                ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", "postgres",
                 "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-f", str(script)],
                env=pg_env, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            init_output += result.stdout
        kind, check = postgres["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        check = check.replace("-h 127.0.0.1", f"-h {PG_HOST}").replace("-p 5432", f"-p {PG_PORT}")
        healthcheck = subprocess.run(
            ["sh", "-c", check], env=pg_env, capture_output=True, text=True, timeout=30
        )

        # Once postgres is healthy Compose starts the dashboard and the workers together.
        # dashboard: published on 127.0.0.1:8080 -> here a free port on 127.0.0.1.
        argv, dash_env = _process(services["dashboard"], root)
        port = _free_port()
        argv[argv.index("--host") + 1] = "127.0.0.1"
        argv[argv.index("--port") + 1] = str(port)
        dash_log = root / "dashboard.log"
        with dash_log.open("w") as log:
            dash = subprocess.Popen(argv, env=dash_env, cwd=REPO, stdout=log, stderr=log, text=True)
        processes.append(dash)

        # worker x 3, started at the same moment, as `docker compose up --scale worker=3`.
        argv, worker_env = _process(services["worker"], root)
        stack = Stack(
            env=env,
            services=services,
            url=worker_env["TUNER_STORAGE"],
            study_name=study_name,
            dashboard=f"http://127.0.0.1:{port}",
            init_output=init_output,
            healthcheck=healthcheck,
        )
        for index in range(N_WORKERS):
            log_path = root / f"worker-{index}.log"
            with log_path.open("w") as log:
                process = subprocess.Popen(
                    argv, env=worker_env, cwd=REPO, stdout=log, stderr=log, text=True
                )
            processes.append(process)
            stack.workers.append(process)
            stack.worker_logs.append(log_path)

        _wait_for_http(stack.dashboard + "/", dash, dash_log, 60)
        for process in stack.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(120)
        yield stack
    finally:
        for process in processes:
            _stop(process)
        admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin_sql(f'DROP DATABASE IF EXISTS "{database}_restored" WITH (FORCE)')
        admin_sql(f'DROP ROLE IF EXISTS "{role}"')


def test_postgres_init_creates_a_plain_role_and_the_healthcheck_passes(stack: Stack) -> None:
    role = stack.env["TUNER_DB_USER"]
    assert "CREATE ROLE" in stack.init_output and "CREATE DATABASE" in stack.init_output
    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = %s", (role,))
            assert cursor.fetchone() == (False, False)
            cursor.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                (stack.env["TUNER_DB_NAME"],),
            )
            assert cursor.fetchone() == (role,)
    finally:
        connection.close()
    assert stack.healthcheck.returncode == 0, stack.healthcheck.stdout + stack.healthcheck.stderr


def test_three_workers_spend_the_exact_budget(stack: Stack) -> None:
    for process, log in zip(stack.workers, stack.worker_logs, strict=True):
        assert process.returncode == 0, f"{shlex.join(process.args)}:\n{log.read_text()}"
    study = _load_study(stack.study_name, stack.url)
    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    assert states.count(optuna.trial.TrialState.COMPLETE) == N_TRIALS
    assert len(states) == N_TRIALS  # nothing RUNNING, WAITING or FAILED is left over


def test_dashboard_answers_with_its_token_only(stack: Stack) -> None:
    token = stack.env["TUNER_DASHBOARD_TOKEN"]
    status, _, _ = _get(stack.dashboard + "/")
    assert status == 401
    status, content_type, body = _get(stack.dashboard + "/", token)
    assert status == 200 and content_type.startswith("text/html"), body[:500]
    status, _, body = _get(stack.dashboard + "/api/studies", token)
    assert status == 200
    assert stack.study_name in [s["study_name"] for s in json.loads(body)["study_summaries"]]
    basic = base64.b64encode(f"any:{token}".encode()).decode()
    request = urllib.request.Request(
        stack.dashboard + "/", headers={"Authorization": f"Basic {basic}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_backup_restores_into_a_fresh_database(stack: Stack, tmp_path: Path) -> None:
    """storage/README.md's pg_dump and pg_restore commands, run on the finished study."""
    role, database = stack.env["TUNER_DB_USER"], stack.env["TUNER_DB_NAME"]
    connect = ["-h", PG_HOST, "-p", str(PG_PORT), "-U", role]
    dump = tmp_path / "tuner.dump"
    subprocess.run(
        ["pg_dump", *connect, "-d", database, "--format=custom", f"--file={dump}"],
        check=True, timeout=60,
    )  # fmt: skip
    restored = f"{database}_restored"
    init = REPO / "storage" / "init" / "01-tuner.sql"
    pg_env = {k: str(v) for k, v in stack.services["postgres"]["environment"].items()}
    subprocess.run(
        ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", "postgres",
         "--no-psqlrc", "-q", "-f", str(init)],
        env={**os.environ, **pg_env, "TUNER_DB_NAME": restored},
        check=True, timeout=30, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["pg_restore", *connect, "-d", restored, "--no-owner", f"--role={role}",
         "--exit-on-error", str(dump)],
        check=True, timeout=60,
    )  # fmt: skip
    url = stack.url.rsplit("/", 1)[0] + "/" + restored
    original = _load_study(stack.study_name, stack.url)
    copy = _load_study(stack.study_name, url)
    assert [(t.number, t.state, t.params, t.value) for t in copy.trials] == [
        (t.number, t.state, t.params, t.value) for t in original.trials
    ]
