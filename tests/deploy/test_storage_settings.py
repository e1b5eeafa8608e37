"""storage/postgresql.conf is a settings file PostgreSQL accepts, sized for the fleet.

The postgres container starts with ``-c config_file=`` this file, so a misspelt parameter or
a bad value would stop the database from starting. ``postgres -C`` reads the file the same
way and prints one parameter without starting a server. Its ``max_connections`` is sized from
what one worker and the dashboard may open, which real ``tuner worker`` and ``tuner dashboard``
runs are measured against here.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from compose_support import REPO, SETTINGS, load_compose, require_tool, sizing
from helpers.study import PG_HOST, PG_PORT, PG_USER, scratch_database
from typer.testing import CliRunner

import tuner.dashboard
from tuner.cli import app


def postgres_binary() -> str | None:
    found = shutil.which("postgres")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return str(candidates[-1]) if candidates else None


def show(parameter: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    binary = postgres_binary()
    assert binary is not None
    command = [binary, "-D", str(data_dir), "-c", f"config_file={SETTINGS}", "-C", parameter]
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """An empty data folder the server may read (pytest's own tmp folders are root-only)."""
    require_tool("the PostgreSQL server binary (postgres)", postgres_binary())
    if os.geteuid() == 0:
        require_tool("a 'postgres' user to run the server as", _has_user("postgres"))
    folder = Path(tempfile.mkdtemp(prefix="tuner-pgconf-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_postgresql_accepts_the_settings_file(data_dir: Path) -> None:
    expected = {
        "max_connections": "200",
        "listen_addresses": "*",
        "idle_in_transaction_session_timeout": "600000",
        "tcp_keepalives_idle": "60",
    }
    for parameter, value in expected.items():
        result = show(parameter, data_dir)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == value


def test_connection_arithmetic_in_the_file_adds_up() -> None:
    """The comment's sum (workers x per worker + dashboard + admin + reserved) fits, and its
    worker count is the most that fit: the docs quote it as what the settings cover."""
    text = SETTINGS.read_text()
    n = sizing()
    overhead = n["dashboard"] + n["admin"] + n["reserved"]
    assert n["workers"] * n["per_worker"] + overhead == n["total"] <= n["limit"]
    assert n["total"] + n["per_worker"] > n["limit"], "one more worker would fit"
    assert re.search(rf"^max_connections = {n['limit']}$", text, re.M)
    assert re.search(rf"^superuser_reserved_connections = {n['reserved']}$", text, re.M)


@pytest.fixture
def pool_capacity(scratch_db: str) -> Iterator[dict[int, int]]:
    """Each SQLAlchemy pool that connects to the test's database while the test runs:
    id -> pool size + overflow, the most connections it can hold open at once. Engines of
    other tests still alive in this process (a dashboard's figure refresher) are not counted."""
    pools: dict[int, int] = {}
    database = scratch_db.rsplit("/", 1)[1]

    def seen(connection: sa.Connection) -> None:
        if connection.engine.url.database != database:
            return
        pool = connection.engine.pool
        # QueuePool keeps its overflow limit private; every PostgreSQL engine here is one.
        pools.setdefault(id(pool), pool.size() + pool._max_overflow)  # type: ignore[attr-defined]

    sa.event.listen(sa.engine.Engine, "engine_connect", seen)
    try:
        yield pools
    finally:
        sa.event.remove(sa.engine.Engine, "engine_connect", seen)


@pytest.fixture
def scratch_db() -> Iterator[str]:
    """A throwaway database on the local server; its storage URL."""
    with scratch_database("tuner_pools") as name:
        yield f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def test_a_worker_and_the_dashboard_open_no_more_than_the_settings_count(
    tmp_path: Path,
    scratch_db: str,
    pool_capacity: dict[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real ``tuner worker`` (heartbeats and the stale-trial reaper included) and
    ``tuner dashboard``, in this process, against PostgreSQL."""
    study = tmp_path / "pools.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "name": "pools",
                "objective": {"model": "tiny_objective:objective", "direction": "minimize"},
                "search_space": {"x": {"low": -10.0, "high": 10.0}},
                "sampler": {"type": "random", "seed": 0},
                "budget": {"n_trials": 8},
                "workers": {"cpu": 1, "heartbeat_interval": 0.2, "heartbeat_grace": 5.0},
            }
        )
    )
    monkeypatch.setenv("TUNER_HOME", str(tmp_path / "home"))
    for name in ("TUNER_STORAGE", "TUNER_GPU_SLOTS_DIR", "TUNER_DASHBOARD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    n = sizing()

    result = CliRunner().invoke(app, ["worker", str(study), "--storage", scratch_db])
    assert result.exit_code == 0, result.output
    assert "ran 8 trial(s)" in result.output
    assert 0 < sum(pool_capacity.values()) <= n["per_worker"], pool_capacity

    pool_capacity.clear()
    monkeypatch.setattr(tuner.dashboard, "serve", lambda *args, **kwargs: None)
    result = CliRunner().invoke(app, ["dashboard", "--storage", scratch_db])
    assert result.exit_code == 0, result.output
    assert 0 < sum(pool_capacity.values()) <= n["dashboard"], pool_capacity


def test_compose_mounts_the_settings_and_init_scripts() -> None:
    postgres = load_compose()["services"]["postgres"]
    assert "config_file=/etc/postgresql/postgresql.conf" in postgres["command"]
    assert "./storage/postgresql.conf:/etc/postgresql/postgresql.conf:ro" in postgres["volumes"]
    assert "./storage/init:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    assert "/storage/data/" in (REPO / ".gitignore").read_text().split()
