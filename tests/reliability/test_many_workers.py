"""Issue 6, point 4: eight workers share one study of 50 trials on PostgreSQL."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from helpers.study import run_tuner, write_study
from optuna.trial import TrialState

from ._fleet import assert_exact_budget, log_problems, trials


def test_eight_workers_spend_exactly_fifty_trials(
    tmp_path: Path, own_pg: Any, study_name: str, record: Any
) -> None:
    url = own_pg.url()
    study_file = write_study(tmp_path, study_name, budget={"n_trials": 50})
    started = time.monotonic()
    result = run_tuner("launch", str(study_file), "--storage", url, "--workers", "8")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr

    final = trials(study_name, url)
    assert len(final) == 50
    assert_exact_budget(final, 50)
    assert len({t.number for t in final}) == 50
    logs = tmp_path / "home" / "logs" / study_name
    assert len(list(logs.glob("worker-*.log"))) == 8
    assert not log_problems(logs), "\n".join(log_problems(logs))
    assert "Traceback" not in result.stderr + result.stdout
    # Nothing went wrong quietly either: no warning (a lost lock, a failed or voided trial),
    # no failed trial, and the trials the workers say they ran are the 50 stored.
    text = "\n".join(log.read_text() for log in sorted(logs.glob("worker-*.log")))
    warnings = [line for line in text.splitlines() if " WARNING " in line]
    assert not warnings, "\n".join(warnings)
    assert not [t.number for t in final if t.state is TrialState.FAIL]
    ran = [int(n) for n in re.findall(r"^worker \S+ ran (\d+) trial", text, re.M)]
    assert len(ran) == 8 and sum(ran) == 50, ran
    workers = {t.user_attrs["tuner:worker"] for t in final}
    record(
        fault="8 workers, one study, n_trials=50",
        trials_lost=0,
        finished=len(final),
        workers_that_ran_trials=len(workers),
        seconds_launch_to_done=round(elapsed, 1),
    )
