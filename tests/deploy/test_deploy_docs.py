"""The deployment docs quote what the settings file and the benchmark say.

README's "Beyond one machine", docs/DEPLOY.md and storage/README.md tell a user how many
workers one database serves. Those figures come from storage/postgresql.conf's sizing comment
(connections) and bench/RESULTS.md (time per trial); when either changes, the docs must too,
and the time quoted for the compose stack must be the one measured on the storage URL that
docker-compose.yml actually uses.
"""

from __future__ import annotations

import re

import pytest
from compose_support import REPO, load_compose, sizing

README = REPO / "README.md"
DEPLOY = REPO / "docs" / "DEPLOY.md"
STORAGE_README = REPO / "storage" / "README.md"
RESULTS = REPO / "bench" / "RESULTS.md"


def between(text: str, start: str, end: str) -> str:
    """The text between two markers (each must be present)."""
    assert start in text and end in text, (start, end)
    return text.split(start, 1)[1].split(end, 1)[0]


def readme_section() -> str:
    return between(README.read_text(), "<!-- deploy:start -->", "<!-- deploy:end -->")


def deploy_section() -> str:
    return between(DEPLOY.read_text(), "### How many workers one database serves", "\n## ")


def benchmark_ms() -> dict[str, list[str]]:
    """bench/overhead.py's per-trial means (ms) by storage URL scheme, as RESULTS.md prints
    them: tuner's worker on each PostgreSQL storage, and plain Optuna for comparison."""
    text = between(RESULTS.read_text(), "<!-- overhead:start -->", "<!-- overhead:end -->")
    journal = re.search(
        r"^- tuner, 8 worker\(s\): per trial mean ([\d.]+) ms at 1,000 trials, "
        r"([\d.]+) ms at 10,000",
        text,
        re.M,
    )
    # | tuner-rdb | trials | 1 | all | median | p95 | mean | ...
    rdb = re.search(r"^\| tuner-rdb \|[^|]+\| 1 \| all \|[^|]+\|[^|]+\| ([\d.]+) \|", text, re.M)
    optuna = re.search(r"^- optuna, 8 worker\(s\): per trial mean ([\d.]+) ms at 1,000", text, re.M)
    assert journal and rdb and optuna, "bench/RESULTS.md's overhead section changed its format"
    return {
        "postgresql+journal://": [journal[1], journal[2]],
        "postgresql+psycopg2://": [rdb[1]],
        "optuna": [optuna[1]],
    }


def compose_scheme() -> str:
    """The storage URL scheme the compose stack's workers and dashboard use."""
    url = load_compose()["x-worker-env"]["TUNER_STORAGE"]
    return url.split("${", 1)[0]


@pytest.mark.parametrize("where", ["README", "docs/DEPLOY.md"])
def test_time_per_trial_is_the_benchmarks_for_the_compose_storage(where: str) -> None:
    section = readme_section() if where == "README" else deploy_section()
    measured = benchmark_ms()
    quoted = re.findall(r"([\d.]+) ms", section)
    assert quoted, f"{where} quotes no time per trial"
    every = {value for values in measured.values() for value in values}
    assert set(quoted) <= every, f"{where} quotes {quoted}; bench/RESULTS.md has {measured}"
    scheme = compose_scheme()
    assert scheme in section, f"{where} does not name the compose file's storage {scheme}"
    assert set(measured[scheme]) & set(quoted), f"{where} misses the figure for {scheme}"


def test_connection_figures_are_the_settings_files() -> None:
    n = sizing()
    docs = {
        "README": readme_section(),
        "docs/DEPLOY.md": deploy_section() + DEPLOY.read_text().split("## A managed", 1)[1],
        "storage/README.md": STORAGE_README.read_text(),
    }
    for where, text in docs.items():
        covered = re.findall(r"(?:covers|serve) (\d+) workers", text)
        per_worker = re.findall(
            r"(?:at most|open|Count) (\d+)(?: connections| per worker| and)", text
        )
        assert covered and set(covered) == {str(n["workers"])}, (where, covered, n)
        assert per_worker and set(per_worker) == {str(n["per_worker"])}, (where, per_worker, n)
        assert f"max_connections = {n['limit']}" in text or f"{n['limit']} connections" in text
