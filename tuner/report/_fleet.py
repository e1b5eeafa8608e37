"""The fleet view: which worker and GPU ran which trial when, how the workers are, what failed.

Two figures, because optuna-dashboard gives each registered figure a fixed 450 px box:

* the timeline: one bar per trial from its start to its end (to "now" while running),
  coloured by state, in one row per worker and, below, one row per GPU;
* the status: a table of workers (state, GPU, last heartbeat, trial, counts) and a table of
  failed trials with the reason the worker recorded and the trials that re-ran them.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from tuner.report._data import (
    failed_trials,
    format_age,
    snapshot_time,
    study_system_attrs,
    trial_gpu,
    trial_worker,
    worker_records,
)
from tuner.report._style import STATE_COLORS, TEMPLATE, title

_REASON_CHARS = 160
# Pixel sizes of the status tables' parts.
_TOP_PX, _BOTTOM_PX, _TITLE_PX, _GAP_PX, _HEADER_PX, _ROW_PX = 70, 10, 24, 16, 30, 30


def _interval(trial: FrozenTrial, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    if trial.datetime_start is None:
        return None
    end = trial.datetime_complete or now
    return trial.datetime_start, max(end, trial.datetime_start)


def fleet_timeline_figure(
    study: optuna.Study,
    *,
    trials: Sequence[FrozenTrial] | None = None,
    now: float | None = None,
    height: int = 450,
) -> go.Figure:
    """Draw trials over time by worker (top) and by GPU (bottom).

    Args:
        study: the study; trials without a ``tuner:worker`` attr go to an "unknown" row.
        trials: the study's trials, when the caller has already read them.
        now: unix time a running trial's bar ends at; by default now rounded down to the
            minute, so a re-drawn figure changes at most once a minute while nothing else does.
        height: figure height in pixels.
    """
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    # Optuna stores naive local datetimes; "now" must be one too.
    end_now = dt.datetime.fromtimestamp(snapshot_time() if now is None else now)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        subplot_titles=("trials by worker", "trials by GPU"),
    )
    for row, key in ((1, trial_worker), (2, trial_gpu)):
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING):
            bars = [
                (t, span)
                for t in trials
                if t.state == state and (span := _interval(t, end_now)) is not None
            ]
            if not bars:
                continue
            fig.add_trace(
                go.Bar(
                    orientation="h",
                    base=[span[0].isoformat(timespec="seconds") for _, span in bars],
                    x=[int((span[1] - span[0]).total_seconds() * 1000) for _, span in bars],
                    y=[key(t) for t, _ in bars],
                    text=[str(t.number) for t, _ in bars],
                    textposition="none",
                    name=state.name.lower(),
                    legendgroup=state.name,
                    showlegend=row == 1,
                    marker={"color": STATE_COLORS[state.name], "line": {"width": 0.5}},
                    hovertemplate="trial %{text}<br>%{y}<br>started %{base|%H:%M:%S}"
                    "<extra>" + state.name.lower() + "</extra>",
                ),
                row=row,
                col=1,
            )
    counts = Counter(t.state.name.lower() for t in trials)
    fig.update_layout(
        template=TEMPLATE,
        height=height,
        barmode="overlay",
        title=title("Fleet: trials over time", ", ".join(f"{n} {s}" for s, n in counts.items())),
        margin={"l": 10, "r": 10, "t": 80, "b": 70},
        legend={"orientation": "h", "yanchor": "top", "y": -0.14, "x": 0},
    )
    fig.update_xaxes(type="date")
    fig.update_yaxes(type="category", categoryorder="category ascending")
    return fig


def _shorten(text: str, limit: int = _REASON_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _columns(rows: list[list[str]]) -> list[list[str]]:
    """Rows to the column lists ``go.Table`` wants."""
    return [list(column) for column in zip(*rows, strict=True)]


def fleet_status_figure(
    study: optuna.Study,
    *,
    trials: Sequence[FrozenTrial] | None = None,
    now: float | None = None,
    height: int | None = 450,
) -> go.Figure:
    """Draw the workers table and the failed-trials table.

    ``height=None`` makes the figure as tall as its rows need (the report does this).

    The heartbeat column shows a coarse age ("< 1 min", "7 min") as of ``now`` (default: now
    rounded to the minute), so a live fleet does not change the figure on every heartbeat.
    """
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    at = snapshot_time() if now is None else now
    records = worker_records(study_system_attrs(study))
    ran = Counter(trial_worker(t) for t in trials if t.state != TrialState.WAITING)
    failed = failed_trials(trials)
    failed_by = Counter(f.worker for f in failed)
    ids = [r.id for r in records]
    ids += sorted(w for w in ran if w not in ids)
    by_id = {r.id: r for r in records}

    def cell(worker_id: str) -> list[str]:
        rec = by_id.get(worker_id)
        if rec is None:
            return [worker_id, "(no record)", "", "", "", str(ran[worker_id]), "0"]
        return [
            rec.id,
            rec.state,
            rec.gpu or "cpu",
            format_age(rec.heartbeat_age(at)),
            "" if rec.trial is None else str(rec.trial),
            str(ran[rec.id]),
            str(failed_by[rec.id]),
        ]

    worker_rows = [cell(w) for w in ids] or [["no workers recorded", "", "", "", "", "", ""]]
    fail_rows = [
        [
            str(f.number),
            f.worker,
            f.gpu or "cpu",
            _shorten(f.reason),
            ", ".join(map(str, f.retried_by)) or "-",
        ]
        for f in failed
    ] or [["-", "no failed trials", "", "", ""]]

    tables = [
        (
            f"workers ({len(records)})",
            ["worker", "state", "GPU", "last heartbeat", "trial", "ran", "failed"],
            [3, 1.3, 1.6, 1.4, 1, 1, 1],
            worker_rows,
        ),
        (
            f"failed trials ({len(failed)})",
            ["trial", "worker", "GPU", "reason", "re-run as"],
            [0.7, 2.2, 1.2, 5, 1.2],
            fail_rows,
        ),
    ]
    # Plotly tables do not stretch to fill their box, so each gets about the height its rows
    # need (scaled down, and scrollable, when the figure is too short); the slack goes below.
    needs = [_HEADER_PX + _ROW_PX * len(rows) + 6 for *_, rows in tables]
    fixed = _TITLE_PX * len(tables) + _GAP_PX
    if height is None:
        height = _TOP_PX + _BOTTOM_PX + fixed + sum(needs)
    area = height - _TOP_PX - _BOTTOM_PX
    # Up to 40% more than the rows need absorbs cells whose text wraps in a narrow figure.
    scale = min(1.4, max(area - fixed, 1) / sum(needs))
    fig = go.Figure()
    top = 1.0
    for (label, header, widths, rows), need in zip(tables, needs, strict=True):
        fig.add_annotation(
            text=f"<b>{label}</b>",
            xref="paper",
            yref="paper",
            x=0,
            y=top,
            xanchor="left",
            yanchor="top",
            showarrow=False,
        )
        table_top = top - _TITLE_PX / area
        bottom = max(table_top - need * scale / area, 0.0)
        fig.add_trace(
            go.Table(
                domain={"x": [0, 1], "y": [bottom, table_top]},
                columnwidth=widths,
                header={
                    "values": header,
                    "fill": {"color": "#e9ecef"},
                    "align": "left",
                    "height": _HEADER_PX,
                },
                cells={"values": _columns(rows), "align": "left", "height": _ROW_PX},
            )
        )
        top = bottom - _GAP_PX / area
    lost = sum(1 for r in records if r.state == "lost")
    detail = f"{len(records)} workers, {lost} lost; {len(failed)} failed trials"
    fig.update_layout(
        template=TEMPLATE,
        height=height,
        title=title("Fleet: workers and failures", detail),
        margin={"l": 10, "r": 10, "t": _TOP_PX, "b": _BOTTOM_PX},
    )
    return fig
