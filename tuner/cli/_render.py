"""Tables and text the commands show; built from library values, printed by the commands."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import optuna
import yaml
from rich.table import Table

from tuner.fleet import Snapshot, load_records, tally
from tuner.fleet._records import study_attrs
from tuner.objectives._select import TEST_SCORE_ATTR
from tuner.spec import StudySpec

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def summary_table(
    spec: StudySpec, snap: Snapshot, *, elapsed: float | None, dashboard_command: str
) -> Table:
    """The end-of-launch summary: best value and parameters, counts, wall time, next step."""
    table = Table(title=f"Study {spec.name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # wrapped, never cut: the dashboard command is copied
    metric = spec.objective.metric or "value"
    best = "-" if snap.best_value is None else f"{snap.best_value:.6g} (trial {snap.best_number})"
    table.add_row(f"best {metric} ({spec.direction})", best)
    for name, value in snap.best_params.items():
        table.add_row(f"  {name}", _short(value))
    t = snap.tally
    table.add_row(
        "trials",
        f"{t.complete} complete, {t.pruned} pruned, {t.failed} failed, {t.running} running, "
        f"{t.waiting} waiting ({t.replaced} failed and re-run)",
    )
    if elapsed is not None:
        table.add_row("wall time", f"{elapsed:.1f}s")
    table.add_row("dashboard", dashboard_command)
    return table


def status_data(study: optuna.Study) -> dict[str, Any]:
    """The ``tuner status --format json`` document."""
    trials = study.get_trials(deepcopy=False)
    states = {name: 0 for name in STATES}
    budget = tally(trials)
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return {
        "name": study.study_name,
        "direction": study.direction.name.lower(),
        "states": states,
        "budget": vars(budget) | {"finished": budget.finished},
        "best": best_data(study),
        "running": [
            {
                "number": t.number,
                "worker": t.user_attrs.get("tuner:worker"),
                "started": t.datetime_start.isoformat() if t.datetime_start else None,
            }
            for t in trials
            if t.state.name == "RUNNING"
        ],
        "workers": [
            {**r.to_json()} for r in sorted(load_records(study).values(), key=lambda r: r.id)
        ],
    }


def best_data(study: optuna.Study) -> dict[str, Any] | None:
    """The best trial as ``{"number", "value", "params"}`` (plus the test score if scored)."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    data: dict[str, Any] = {"number": best.number, "value": best.value, "params": best.params}
    score = study_attrs(study).get(TEST_SCORE_ATTR)
    if score and score.get("trial") == best.number:
        data["test"] = {k: v for k, v in score.items() if k != "trial"}
    return data


def status_table(data: dict[str, Any]) -> Table:
    table = Table(title=f"Study {data['name']} ({data['direction']})", title_justify="left")
    for name in STATES:
        table.add_column(name.lower(), justify="right")
    table.add_column("best", justify="right")
    best = data["best"]
    table.add_row(
        *(str(data["states"][name]) for name in STATES),
        "-" if best is None else f"{best['value']:.6g} (#{best['number']})",
    )
    return table


def workers_table(data: dict[str, Any]) -> Table:
    table = Table(title="Running trials", title_justify="left")
    for column in ("trial", "worker", "started"):
        table.add_column(column)
    for row in data["running"]:
        # A trial is taken a moment before its worker's name is stored on it.
        worker = row["worker"] or "(starting)"
        table.add_row(str(row["number"]), worker, str(row["started"]))
    return table


def best_yaml(study: optuna.Study, spec: StudySpec) -> str:
    """The best parameters as YAML that pastes into a study file's ``objective:`` section."""
    best = best_data(study)
    if best is None:
        return "# no complete trial yet\n"
    header = (
        f"# study {study.study_name}, trial {best['number']}: "
        f"{spec.objective.metric or 'value'} = {best['value']:.6g}"
    )
    if "test" in best:
        test = best["test"]
        header += f"; {test.get('metric', 'test')} = {test.get('value')}"
        if test.get("refit"):
            header += (
                f" (retrained on the whole training split, {test['refit']['n_train']} "
                f"samples, {test['refit']['epochs']} epochs)"
            )
    return header + "\n" + yaml.safe_dump(best["params"], sort_keys=False)


def trials_data(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial with its state, value, parameters, learning curve and user attributes."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": t.params,
                "intermediate_values": {
                    str(k): v for k, v in sorted(t.intermediate_values.items())
                },
                "user_attrs": t.user_attrs,
                "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
                "datetime_complete": t.datetime_complete.isoformat()
                if t.datetime_complete
                else None,
            }
        )
    return rows


def trials_csv(rows: list[dict[str, Any]]) -> str:
    """``trials_data`` as CSV: one column per parameter, JSON for curves and attributes."""
    params = sorted({name for row in rows for name in row["params"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "number",
            "state",
            "value",
            *(f"params_{p}" for p in params),
            "intermediate_values",
            "user_attrs",
            "datetime_start",
            "datetime_complete",
        ]
    )
    for row in rows:
        writer.writerow(
            [
                row["number"],
                row["state"],
                "" if row["value"] is None else row["value"],
                *(row["params"].get(p, "") for p in params),
                json.dumps(row["intermediate_values"]),
                json.dumps(row["user_attrs"], default=str),
                row["datetime_start"] or "",
                row["datetime_complete"] or "",
            ]
        )
    return buffer.getvalue()


def _short(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
