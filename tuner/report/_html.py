"""The study report: one self-contained HTML file that opens offline.

plotly.js is inlined once in the page head (about 4.8 MB; nothing is fetched from a CDN), and
each figure is a ``<div>`` drawn from JSON in the page. The file can be attached to a ticket
or a paper and opened years later without a server or network.

A figure that cannot be drawn for this study (too few complete trials for importances, no
intermediate values, ...) is replaced by a short note saying why, never by an error.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.offline import get_plotlyjs

from tuner.errors import TunerError
from tuner.report._data import (
    TEST_SCORE_ATTR,
    has_fleet_data,
    pruning_summary,
    study_system_attrs,
)
from tuner.report._fleet import fleet_status_figure, fleet_timeline_figure
from tuner.report._pruning import best_trial_number, pruning_figure

logger = logging.getLogger(__name__)

# PED-ANOVA (Optuna 5's default evaluator) compares the top quantile of trials with the rest;
# below this many complete trials the ranking is noise, so the report leaves it out.
MIN_TRIALS_FOR_IMPORTANCE = 5
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

_CSS = """
body { font-family: Arial, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.kv { border-collapse: collapse; margin: 0.5em 0; }
table.kv td, table.kv th { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
table.kv th { background: #f1f3f5; }
p.note { color: #666; font-style: italic; }
.meta { color: #666; }
"""


class ReportError(TunerError):
    """The report cannot be written (e.g. its directory does not exist)."""


def _plot(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOT_CONFIG)


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _figure_section(
    heading: str, div_id: str, build: Callable[[], go.Figure], skip_reason: str | None
) -> str:
    """A heading and the figure, or a note saying why the figure is left out."""
    why = skip_reason
    if why is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fig: go.Figure | None = build()
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                fig, why = None, str(exc)
        if fig is not None and len(fig.data) > 0:
            return f"<h2>{html.escape(heading)}</h2>\n{_plot(fig, div_id)}"
        why = why or (str(caught[-1].message) if caught else "nothing to plot")
        logger.warning("report: %s left out: %s", heading, why)
    note = _note("Omitted: " + why.rstrip(".") + ".")
    return f"<h2>{html.escape(heading)}</h2>\n{note}"


def _kv_table(rows: list[tuple[str, object]], header: tuple[str, str] | None = None) -> str:
    head = ""
    if header:
        head = f"<tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>"
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f'<table class="kv">{head}{cells}</table>'


def _summary_section(study: optuna.Study, trials: list[FrozenTrial]) -> str:
    system_attrs = study_system_attrs(study)
    counts = Counter(t.state.name for t in trials)
    directions = ", ".join(d.name.lower() for d in study.directions)
    rows: list[tuple[str, object]] = [
        ("study", study.study_name),
        ("direction", directions),
        ("trials", len(trials)),
        *((state.name.lower(), counts[state.name]) for state in TrialState if counts[state.name]),
        ("pruning", pruning_summary(system_attrs, trials).text()),
    ]
    parts = ["<h2>Summary</h2>", _kv_table(rows)]

    best = best_trial_number(study, trials)
    parts.append("<h2>Best trial</h2>")
    if best is None:
        complete = sum(1 for t in trials if t.state == TrialState.COMPLETE)
        why = "no trial has completed" if not complete else "the study has several objectives"
        parts.append(_note(f"No single best trial: {why}."))
    else:
        trial = next(t for t in trials if t.number == best)
        parts.append(_kv_table([("trial", trial.number), ("value", trial.value)]))
        score = system_attrs.get(TEST_SCORE_ATTR)
        if isinstance(score, dict) and "value" in score:
            metric = score.get("metric", "test score")
            how = ", retrained on the whole training split" if score.get("refit") else ""
            parts.append(
                _kv_table([(f"{metric} (trial {score.get('trial', '?')}{how})", score["value"])])
            )
        parts.append(
            _kv_table(sorted(trial.params.items()), header=("parameter", "value"))
            if trial.params
            else _note("The best trial has no parameters.")
        )
    return "\n".join(parts)


def _objective0(trial: FrozenTrial) -> float:
    return trial.values[0]  # multi-objective studies: the figures show the first objective


def render_report(study: optuna.Study, *, title: str | None = None) -> str:
    """The report page of ``study`` as one HTML string (see :func:`write_report`)."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    multi = len(study.directions) > 1
    target = {"target": _objective0, "target_name": "objective 0"} if multi else {}
    no_complete = "no trial has completed yet" if not complete else None
    with_params = [t for t in complete if t.params]
    importance_skip = no_complete or (
        f"{len(with_params)} complete trials with parameters; importances need at least "
        f"{MIN_TRIALS_FOR_IMPORTANCE}"
        if len(with_params) < MIN_TRIALS_FOR_IMPORTANCE
        else None
    )
    curves_skip = (
        None
        if any(t.intermediate_values for t in trials)
        else "no trial reported intermediate values"
    )
    # As on the dashboard: a study tuner workers did not run has no fleet to show.
    fleet_skip = (
        None
        if has_fleet_data(study_system_attrs(study), trials)
        else "no tuner worker ran this study"
    )
    viz = optuna.visualization
    sections = [
        _summary_section(study, trials),
        _figure_section(
            "Optimization history",
            "history",
            lambda: viz.plot_optimization_history(study, **target),
            no_complete,
        ),
        _figure_section(
            "Intermediate values",
            "intermediate",
            lambda: viz.plot_intermediate_values(study),
            curves_skip,
        ),
        _figure_section(
            "Parameter importance",
            "importance",
            lambda: viz.plot_param_importances(study, **target),
            importance_skip,
        ),
        _figure_section(
            "Parallel coordinates",
            "parallel",
            lambda: viz.plot_parallel_coordinate(study, **target),
            no_complete or (None if with_params else "the trials have no parameters"),
        ),
        _figure_section(
            "Pruning",
            "pruning",
            lambda: pruning_figure(study, trials=trials, max_curves=1000, height=600),
            curves_skip,
        ),
        _figure_section(
            "Fleet: trials over time",
            "fleet-timeline",
            lambda: fleet_timeline_figure(study, trials=trials, height=500),
            fleet_skip or (None if any(t.datetime_start for t in trials) else "no trial started"),
        ),
        _figure_section(
            "Fleet: workers and failures",
            "fleet-status",
            lambda: fleet_status_figure(study, trials=trials, height=None),
            fleet_skip,
        ),
    ]
    heading = title or f"Study report: {study.study_name}"
    generated = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(heading)}</title>\n<style>{_CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
        f"<h1>{html.escape(heading)}</h1>\n"
        f'<p class="meta">Generated {generated} by tuner with Optuna {optuna.__version__}.</p>\n'
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def write_report(
    study: optuna.Study, out: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Write the study report to ``out``: one self-contained HTML file that opens offline.

    It holds the study's summary (direction, trials by state, pruning summary), the best trial
    and its parameters (and the test score if the study records one), then the optimization
    history, intermediate values, parameter importance, parallel coordinates, the pruning view
    and the fleet view (for studies tuner workers ran). A figure the study cannot support
    yet is replaced by a note.

    Args:
        study: the study to report on.
        out: the file to write; replaced atomically if it exists.
        title: the page title; defaults to ``Study report: <study name>``.

    Returns:
        The path written.

    Raises:
        ReportError: ``out`` is a directory, its directory does not exist, or writing fails.
    """
    path = Path(out)
    if path.is_dir():
        raise ReportError(f"report: --out must be a file, but {path} is a directory")
    if not path.parent.is_dir():
        raise ReportError(f"report: cannot write {path}: directory {path.parent} does not exist")
    page = render_report(study, title=title)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"report: cannot write {path}: {exc.strerror or exc}") from exc
    logger.info("wrote report of study %s to %s (%d KB)", study.study_name, path, len(page) // 1024)
    return path
