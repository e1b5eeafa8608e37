"""Issue 6, point 6: malformed study files are refused with one line, exit 2, nothing stored.

The corpus is ``bad_studies/``: each file's first line says ``# expect: <fragment>``, the part
of the message that names the field (or the line, or the byte) and the rule. A missing file,
a directory and an oversized file are made here. Most cases run in-process through typer's
``CliRunner``; a few run as real ``tuner launch`` processes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.study import run_tuner
from typer.testing import CliRunner

from tuner.cli import app

from .conftest import OwnPostgres

CORPUS = Path(__file__).with_name("bad_studies")
FILES = sorted(CORPUS.glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


@pytest.fixture(scope="module")
def untouched_db(pg_server: Any) -> Iterator[OwnPostgres]:
    """One empty database for the whole corpus; every case must leave it empty."""
    db = OwnPostgres(pg_server, f"rel_bad_{uuid.uuid4().hex[:8]}")
    db.execute(f'CREATE DATABASE "{db.database}"')
    yield db
    db.execute(f'DROP DATABASE IF EXISTS "{db.database}" WITH (FORCE)')


def _assert_refused(code: int, stdout: str, stderr: str, path: Path, fragment: str) -> None:
    """Exit 2, no traceback, one line ``Error: FILE: ...`` whose message has ``fragment``.

    The fragment is looked for after the file's name, which would otherwise match fragments
    such as ``name`` or ``search_space`` for a file called ``wrong_type_search_space.yaml``.
    """
    assert code == 2, f"exit {code}\n{stdout}\n{stderr}"
    assert "Traceback" not in stdout + stderr
    lines = stderr.rstrip("\n").split("\n")
    assert len(lines) == 1, f"not one line:\n{stderr}"
    prefix = f"Error: {path}: "
    assert lines[0].startswith(prefix), lines[0]
    message = lines[0].removeprefix(prefix)
    assert fragment in message, f"{fragment!r} not in {message!r}"


def _assert_embedded_untouched(home: Path) -> None:
    """Nothing under ``$TUNER_HOME``, where the embedded default keeps its journal."""
    assert not home.exists() or not any(home.rglob("*")), list(home.rglob("*"))


def test_corpus_is_large_and_varied() -> None:
    assert len(FILES) >= 30
    assert len({_expected(p) for p in FILES}) >= 30


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_study_file_is_refused(path: Path, untouched_db: OwnPostgres, tmp_path: Path) -> None:
    url = untouched_db.url()
    result = CliRunner().invoke(app, ["launch", str(path), "--storage", url])
    _assert_refused(result.exit_code, result.stdout, result.stderr, path, _expected(path))
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert untouched_db.tables() == [], "the storage was written to"

    result = CliRunner().invoke(app, ["launch", str(path)])  # the embedded default
    _assert_refused(result.exit_code, result.stdout, result.stderr, path, _expected(path))
    _assert_embedded_untouched(tmp_path / "home")  # $TUNER_HOME, set for every test


def test_missing_directory_and_oversized_files_are_refused(
    untouched_db: OwnPostgres, tmp_path: Path
) -> None:
    """On PostgreSQL and on the embedded default, and by ``tuner worker`` as by ``launch``."""
    studies = tmp_path / "studies"
    studies.mkdir()
    big = studies / "big.yaml"
    big.write_text("name: big\n# " + "x" * 1_100_000 + "\n")
    cases = {
        studies / "no-such-study.yaml": "no such file",
        studies: "is a directory, not a study file",
        big: "larger than 1000000 bytes",
    }
    for path, fragment in cases.items():
        for command in ("launch", "worker"):
            for storage in (["--storage", untouched_db.url()], []):
                result = CliRunner().invoke(app, [command, str(path), *storage])
                _assert_refused(result.exit_code, result.stdout, result.stderr, path, fragment)
    assert untouched_db.tables() == []
    _assert_embedded_untouched(tmp_path / "home")


@pytest.mark.parametrize(
    ("name", "storage"),
    [
        ("billion_laughs", "embedded"),
        ("not_utf8", "postgresql"),
        ("when_cycle", "embedded"),
        ("yaml_unclosed_flow", "postgresql"),
    ],
)
def test_bad_study_file_as_a_real_process(
    name: str, storage: str, untouched_db: OwnPostgres, tmp_path: Path
) -> None:
    """As a user runs it: on the embedded default no journal is created; on PostgreSQL
    nothing is written."""
    path = CORPUS / f"{name}.yaml"
    more = ["--storage", untouched_db.url()] if storage == "postgresql" else []
    result = run_tuner("launch", str(path), *more, cwd=tmp_path, timeout=60)
    _assert_refused(result.returncode, result.stdout, result.stderr, path, _expected(path))
    assert untouched_db.tables() == []
    _assert_embedded_untouched(tmp_path / "home")  # $TUNER_HOME, where the journal would be
    assert not (tmp_path / "storage").exists()
