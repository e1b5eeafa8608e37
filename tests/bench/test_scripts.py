"""Each benchmark script's ``--quick`` mode still runs and reports its figure (issue 7).

These are not timed tests: they check that a script exits 0, that its last line has the
figure's shape, and that it wrote its own section of the results file (a temporary copy,
never bench/RESULTS.md). The scripts run one at a time: each starts worker processes that
size their torch threads for the whole machine, and several at once thrash the cores.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300.0  # a guard against a hung script, not a time limit

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


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_quick_mode_prints_its_figure_and_writes_its_section(tmp_path: Path, name: str) -> None:
    results = tmp_path / f"{name}.md"
    results.write_text(
        "# Benchmark results\n\n<!-- accuracy:start -->\nkept\n<!-- accuracy:end -->\n"
    )
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), "--quick", "--results", str(results)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )
    output = done.stdout
    assert done.returncode == 0, output[-4000:]
    last = output.strip().splitlines()[-1]
    assert re.match(SCRIPTS[name], last), f"last line has not the figure's shape: {last!r}"

    text = results.read_text()
    section = text.split(f"<!-- {name}:start -->", 1)[1].split(f"<!-- {name}:end -->", 1)[0]
    assert "Command: `python bench/" in section and "--quick" in section
    assert "Versions: Python" in section and "Optuna" in section and "Machine:" in section
    assert last in section, "the section records the figure it printed"
    assert "<!-- accuracy:start -->\nkept\n<!-- accuracy:end -->" in text, "other sections kept"
