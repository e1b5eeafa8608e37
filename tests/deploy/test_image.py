"""The Dockerfile and .dockerignore, checked without a Docker engine.

The image cannot be built here, so these tests check what would make it wrong: a build tool
or root user in the final stage, a file the Dockerfile copies that .dockerignore leaves out
(or a secret it lets in), and a tuner package that imports from the source tree but not once
``pip install .`` has built it into a wheel, as the image's build stage does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from compose_support import REPO, load_compose

DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile, each with its (INSTRUCTION, arguments) in order."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[Stage] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def _rule_regex(rule: str) -> str:
    """A .dockerignore rule as a regular expression: `*` and `?` stay within one folder,
    `**` crosses folders, `[...]` is a character class."""
    out, i = "", 0
    while i < len(rule):
        if rule.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif rule.startswith("**", i):
            out, i = out + ".*", i + 2
        elif rule[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif rule[i] == "?":
            out, i = out + "[^/]", i + 1
        elif rule[i] == "[":
            end = rule.index("]", i)
            out, i = out + rule[i : end + 1], end + 1
        else:
            out, i = out + re.escape(rule[i]), i + 1
    return out


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last matching rule wins,
    and a rule that matches a folder covers everything inside it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        regex = _rule_regex(pattern.removeprefix("!").strip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not pattern.startswith("!")
    return excluded


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_final_stage_is_slim_unprivileged_and_has_no_build_tools(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "a build stage and a final stage"
    build, final = stages[0], stages[-1]
    assert build.name is not None
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim-\w+", final.base)
    assert final.base == build.base, "the virtual environment only runs on the same Python"
    for command in final.args("RUN"):
        assert not re.search(r"apt-get|apk |gcc|g\+\+|build-essential|make |pip ", command)
    assert f"--from={build.name} /opt/venv /opt/venv" in final.args("COPY")
    (user,) = final.args("USER")
    assert user not in ("root", "0")
    assert final.args("WORKDIR") == ["/app"]
    assert "search_spaces ./search_spaces" in final.args("COPY")


def test_torch_variant_chooses_cuda_or_cpu_wheels(stages: list[Stage]) -> None:
    build = stages[0]
    assert "TORCH_VARIANT=cuda" in build.args("ARG")
    (install,) = [c for c in build.args("RUN") if "TORCH_VARIANT" in c and "torch==" in c]
    assert "download.pytorch.org/whl/cpu" in install
    compose_args = load_compose()["x-tuner-image"]["build"]["args"]
    assert compose_args["TORCH_VARIANT"] == "${TUNER_TORCH:-cuda}"


def test_build_context_holds_what_is_copied_and_no_secrets(
    stages: list[Stage], ignore_patterns: list[str]
) -> None:
    copied = []
    for stage in stages:
        for args in stage.args("COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            if any(w.startswith("--from") for w in args.split()):
                continue
            copied += words[:-1]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which is missing"
        assert not dockerignored(source, ignore_patterns), f".dockerignore leaves out {source}"
    for kept_out in (".env", ".git/config", ".venv/bin/python", "storage/data/journal.log",
                     "tuner/__pycache__/cli.cpython-311.pyc", "tests/conftest.py"):  # fmt: skip
        assert dockerignored(kept_out, ignore_patterns), f".dockerignore lets in {kept_out}"


def test_gpu_slots_folder_is_in_the_image_and_writable_by_the_worker(
    stages: list[Stage],
) -> None:
    """The GPU worker locks its slot files there; the named volume mounted over it takes the
    image folder's owner, so an unprivileged worker can create them."""
    worker = load_compose()["services"]["worker"]
    slots_dir = worker["environment"]["TUNER_GPU_SLOTS_DIR"]
    assert f"gpu-slots:{slots_dir}" in worker["volumes"]
    (user,) = stages[-1].args("USER")
    assert any(
        re.search(rf"install --directory --owner={user} --group={user} .*{slots_dir}\b", run)
        for run in stages[-1].args("RUN")
    ), stages[-1].args("RUN")


def test_package_built_as_in_the_image_carries_every_file(tmp_path: Path) -> None:
    """`pip install .` from the files the Dockerfile copies, then `tuner --help` from it."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        assert (REPO / name).is_file(), f"the image build needs {name}"
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "tuner", source / "tuner", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("tuner-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        path.relative_to(source).as_posix()
        for path in (source / "tuner").rglob("*")
        if path.is_file() and not path.name.endswith((".pyc", ".pyo"))
    }
    assert expected <= packaged, f"missing from the wheel: {sorted(expected - packaged)}"

    site = tmp_path / "site"  # a pure-Python wheel installs by unpacking
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", "import tuner, tuner.cli; print(tuner.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(site))
