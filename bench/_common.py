"""What every benchmark script shares: the machine and versions, PostgreSQL scratch databases,
percentiles, and writing one figure's section of bench/RESULTS.md.

Each script owns one section, fenced by ``<!-- name:start -->`` and ``<!-- name:end -->``;
writing a section replaces only the text between its own markers, so scripts (and people)
can update their figures independently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"
PG_HOST = os.environ.get("TUNER_BENCH_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TUNER_BENCH_PGPORT", "5432"))
PG_USER = os.environ.get("TUNER_BENCH_PGUSER", "postgres")

if str(REPO) not in sys.path:  # scripts run as ``python bench/x.py`` from anywhere
    sys.path.insert(0, str(REPO))


# --- machine and versions -------------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    """Where and with what a figure was measured."""

    cpu: str
    cores: int
    memory_gib: float
    python: str
    optuna: str
    torch: str
    tuner_sha: str
    postgresql: str

    def markdown(self) -> str:
        database = f"PostgreSQL {self.postgresql}, " if self.postgresql != "-" else ""
        return (
            f"- Machine: {self.cpu}, {self.cores} cores, {self.memory_gib:.0f} GiB RAM, no GPU "
            "unless stated\n"
            f"- Versions: Python {self.python}, Optuna {self.optuna}, PyTorch {self.torch}, "
            f"{database}tuner {self.tuner_sha}"
        )


def environment(pg_url: str | None = None) -> Environment:
    """Describe this machine and the versions in use (``pg_url`` adds the server version)."""
    import optuna

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return Environment(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        memory_gib=_memory_gib(),
        python=platform.python_version(),
        optuna=optuna.__version__,
        torch=torch_version,
        tuner_sha=_git_sha(),
        postgresql=_pg_version(pg_url) if pg_url else "-",
    )


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _git_sha() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}{' + uncommitted changes' if dirty else ''}"


def _pg_version(url: str) -> str:
    import sqlalchemy as sa

    from tuner.storage._url import sqlalchemy_url

    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as connection:
            return str(connection.execute(sa.text("SHOW server_version")).scalar())
    except Exception:
        return "unknown"
    finally:
        engine.dispose()


def command_line() -> str:
    """The command that is running, as one copyable line from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


# --- PostgreSQL scratch databases -----------------------------------------------------------


def pg_url(database: str, scheme: str = "postgresql+psycopg2") -> str:
    return f"{scheme}://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def admin_sql(sql: str) -> None:
    """Run one statement on the server's ``postgres`` database, outside a transaction."""
    import psycopg2

    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


def create_database(prefix: str, template: str | None = None) -> str:
    """Create a fresh database (optionally a copy of ``template``) and return its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def drop_database(name: str) -> None:
    admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(prefix: str, keep: bool = False) -> Iterator[str]:
    """A database that exists for the ``with`` block and is dropped after it."""
    name = create_database(prefix)
    try:
        yield name
    finally:
        if not keep:
            drop_database(name)


# --- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation, as numpy's default."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# --- bench/RESULTS.md -----------------------------------------------------------------------

_HEADER = """# Benchmark results

Each section is written by the script named in it; rerun the command shown to reproduce it.
The scripts print their figure as their last line; each script's docstring says what is
measured and how.
"""


def write_section(name: str, body: str, path: Path | None = None) -> Path:
    """Replace (or append) the section ``name`` of the results file with ``body``."""
    path = path or RESULTS
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else _HEADER
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def stamp() -> str:
    """The date a figure was measured, for its section."""
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M")


def table_header(*columns: tuple[str, str]) -> str:
    """A Markdown table's two header lines from (title, alignment such as '---:') pairs."""
    titles = "| " + " | ".join(title for title, _ in columns) + " |"
    return titles + "\n|" + "|".join(align for _, align in columns) + "|"
