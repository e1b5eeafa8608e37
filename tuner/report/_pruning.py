"""The pruning view: every learning curve, where trials were stopped, and the compute saved.

Top panel: each trial's intermediate values (step = epoch), coloured by state, the best trial
drawn thick, and an X where each pruned trial was stopped. Bottom panel, on the same step
axis: how many trials were stopped at each step, which shows a Hyperband or successive-halving
pruner's rungs as bars. The title states the epochs saved against running every trial to the
end (see :func:`tuner.report._data.pruning_summary`).
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
import plotly.graph_objects as go
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from tuner.report._data import last_step, pruning_summary, study_system_attrs
from tuner.report._style import BEST_COLOR, STATE_COLORS, TEMPLATE, rounded, title

_CURVE_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.FAIL)


def best_trial_number(study: optuna.Study, trials: Sequence[FrozenTrial]) -> int | None:
    """The best COMPLETE trial of a single-objective study, else ``None``."""
    if len(study.directions) != 1:
        return None
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    pick = max if study.direction == StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: t.value).number  # type: ignore[arg-type,return-value]


def _shown_curves(
    trials: Sequence[FrozenTrial], best: int | None, max_curves: int
) -> list[FrozenTrial]:
    """The trials whose curves are drawn: the best one plus the most recent ones."""
    with_curves = [t for t in trials if t.intermediate_values and t.state in _CURVE_STATES]
    if len(with_curves) <= max_curves:
        return with_curves
    recent = sorted(with_curves, key=lambda t: t.number)[-max_curves:]
    if best is not None and all(t.number != best for t in recent):
        recent = [t for t in with_curves if t.number == best] + recent[1:]
    return sorted(recent, key=lambda t: t.number)


def _curve_trace(
    trials: Sequence[FrozenTrial], name: str, color: str, **line: object
) -> go.Scatter:
    """All curves of one state as one trace, separated by gaps (much smaller JSON than one
    trace per trial)."""
    xs: list[int | None] = []
    ys: list[float | None] = []
    labels: list[str | None] = []
    for trial in trials:
        for step, value in sorted(trial.intermediate_values.items()):
            xs.append(step)
            ys.append(rounded(value))
            labels.append(str(trial.number))
        xs.append(None)
        ys.append(None)
        labels.append(None)
    return go.Scatter(
        x=xs,
        y=ys,
        text=labels,
        mode="lines",
        name=name,
        legendgroup=name,
        line={"color": color, **line},
        hovertemplate="trial %{text}<br>step %{x}<br>value %{y}<extra>" + name + "</extra>",
        connectgaps=False,
    )


def pruning_figure(
    study: optuna.Study,
    *,
    trials: Sequence[FrozenTrial] | None = None,
    max_curves: int = 200,
    height: int = 450,
) -> go.Figure:
    """Draw the pruning view of ``study``.

    Args:
        study: any Optuna study; tuner's ``tuner:epochs`` system attr is used when present.
        trials: the study's trials, when the caller has already read them.
        max_curves: draw at most this many curves (the best trial and the most recent ones),
            which bounds the size of the figure stored in the study.
        height: figure height in pixels (optuna-dashboard gives a custom figure 450 px).

    Returns:
        A plotly figure; with no intermediate values at all it holds only a note saying so.
    """
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    summary = pruning_summary(study_system_attrs(study), trials)
    best = best_trial_number(study, trials)
    shown = _shown_curves(trials, best, max_curves)
    n_curves = sum(1 for t in trials if t.intermediate_values)

    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.04
    )
    for state in _CURVE_STATES:
        group = [t for t in shown if t.state == state and t.number != best]
        if group:
            name = state.name.lower()
            opacity = 0.7 if state == TrialState.PRUNED else 0.8
            fig.add_trace(
                _curve_trace(group, name, STATE_COLORS[state.name], width=1),
                row=1,
                col=1,
            ).update_traces(opacity=opacity, selector={"name": name})
    best_trials = [t for t in shown if t.number == best]
    if best_trials:
        fig.add_trace(
            _curve_trace(best_trials, f"best (trial {best})", BEST_COLOR, width=3), row=1, col=1
        )

    pruned = [t for t in shown if t.state == TrialState.PRUNED]
    if pruned:
        fig.add_trace(
            go.Scatter(
                x=[last_step(t) for t in pruned],
                y=[rounded(t.intermediate_values[last_step(t)]) for t in pruned],  # type: ignore[index]
                text=[str(t.number) for t in pruned],
                mode="markers",
                name="stopped here",
                marker={"symbol": "x", "size": 8, "color": STATE_COLORS["PRUNED"]},
                hovertemplate="trial %{text} pruned at step %{x}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    if summary.stop_steps:
        fig.add_trace(
            go.Bar(
                x=list(summary.stop_steps),
                y=list(summary.stop_steps.values()),
                name="trials stopped at step",
                marker={"color": STATE_COLORS["PRUNED"]},
                hovertemplate="%{y} trials stopped at step %{x}<extra></extra>",
                showlegend=False,
            ),
            row=2,
            col=1,
        )

    detail = summary.detail()
    if len(shown) < n_curves:
        detail += f"; showing {len(shown)} of {n_curves} curves"
    fig.update_layout(
        template=TEMPLATE,
        height=height,
        title=title(f"Pruning: {summary.headline()}", detail),
        margin={"l": 50, "r": 10, "t": 70, "b": 75},
        legend={"orientation": "h", "yanchor": "top", "y": -0.16, "x": 0},
        hovermode="closest",
    )
    fig.update_yaxes(title_text="intermediate value", row=1, col=1)
    fig.update_yaxes(title_text="stopped", row=2, col=1, rangemode="tozero")
    fig.update_xaxes(title_text="step (epoch)", row=2, col=1)
    if n_curves == 0:
        fig.add_annotation(
            text="No trial has reported intermediate values yet.",
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.6,
            showarrow=False,
        )
    return fig
