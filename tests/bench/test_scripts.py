"""Each benchmark script's ``--quick`` mode still runs and reports its figure (issue 7).

These are not timed tests: they check that a script exits 0, that its last line has the
figure's shape, and that it wrote its own section of the results file (a temporary copy,
never bench/RESULTS.md). The four scripts run at once to keep the suite short.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 85.0

NUMBER = r"[0-9]+(?:\.[0-9]+)?"
SCRIPTS = {
    "overhead": (
        rf"^overhead per trial, tuner/optuna: (?:[0-9]+x[0-9]+ median {NUMBER} "
        rf"mean {NUMBER}(?:, )?)+; max {NUMBER} \(goal <= 0\.25\)$"
    ),
    "scaling": (
        rf"^scaling, trials/min: 1 worker {NUMBER}, 2 workers {NUMBER}; ratio {NUMBER} "
        rf"\(epochs/min ratio {NUMBER}; goal >= 1\.8\)$"
    ),
    "pruning": (
        rf"^pruning, Hyperband vs none: cnn {NUMBER}x fewer epochs, time to target .+; "
        rf"lstm {NUMBER}x fewer epochs, time to target .+ \(goal >= 3x fewer epochs\)$"
    ),
    "gpu_throughput": (
        rf"^gpu throughput \((?:cpu|cuda)\), trials/hour: loop {NUMBER}; x1 {NUMBER}, "
        rf"x2 {NUMBER}; best x[12] {NUMBER}x the loop \(goal >= 6x\)$"
    ),
}


@dataclass
class Started:
    process: subprocess.Popen[str]
    results: Path
    began: float


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Started]]:
    """Start every script's --quick run, each writing its own temporary results file."""
    folder = tmp_path_factory.mktemp("bench")
    started = {}
    for name in SCRIPTS:
        results = folder / f"{name}.md"
        results.write_text(
            "# Benchmark results\n\n<!-- accuracy:start -->\nkept\n<!-- accuracy:end -->\n"
        )
        process = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / f"{name}.py"),
                "--quick",
                "--results",
                str(results),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started[name] = Started(process, results, time.monotonic())
    yield started
    for run in started.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_quick_mode_prints_its_figure_and_writes_its_section(
    runs: dict[str, Started], name: str
) -> None:
    run = runs[name]
    output, _ = run.process.communicate(timeout=max(1.0, TIMEOUT - (time.monotonic() - run.began)))
    assert run.process.returncode == 0, output[-4000:]
    last = output.strip().splitlines()[-1]
    assert re.match(SCRIPTS[name], last), f"last line has not the figure's shape: {last!r}"

    text = run.results.read_text()
    section = text.split(f"<!-- {name}:start -->", 1)[1].split(f"<!-- {name}:end -->", 1)[0]
    assert "Command: `python bench/" in section and "--quick" in section
    assert "Versions: Python" in section and "Optuna" in section and "Machine:" in section
    assert last in section, "the section records the figure it printed"
    assert "<!-- accuracy:start -->\nkept\n<!-- accuracy:end -->" in text, "other sections kept"
