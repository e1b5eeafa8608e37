"""storage/postgresql.conf is a settings file PostgreSQL accepts, sized for the fleet.

The postgres container starts with ``-c config_file=`` this file, so a misspelt parameter or
a bad value would stop the database from starting. ``postgres -C`` reads the file the same
way and prints one parameter without starting a server.
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
from compose_support import REPO, load_compose, require_tool

SETTINGS = REPO / "storage" / "postgresql.conf"


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
    """The comment's sum (workers x per worker + dashboard + admin + reserved) fits."""
    text = SETTINGS.read_text()
    match = re.search(
        r"(\d+) >= (\d+) workers x (\d+) \+ 1 x (\d+) \+ (\d+) \+ (\d+) = (\d+)", text
    )
    assert match, "the sizing comment is missing"
    limit, workers, per_worker, dashboard, admin, reserved, total = map(int, match.groups())
    assert workers * per_worker + dashboard + admin + reserved == total <= limit
    assert re.search(rf"^max_connections = {limit}$", text, re.M)
    assert re.search(rf"^superuser_reserved_connections = {reserved}$", text, re.M)


def test_compose_mounts_the_settings_and_init_scripts() -> None:
    postgres = load_compose()["services"]["postgres"]
    assert "config_file=/etc/postgresql/postgresql.conf" in postgres["command"]
    assert "./storage/postgresql.conf:/etc/postgresql/postgresql.conf:ro" in postgres["volumes"]
    assert "./storage/init:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    assert "/storage/data/" in (REPO / ".gitignore").read_text().split()
