"""The look shared by every tuner figure, kept small because figures are stored in the study.

optuna-dashboard stores a registered figure as JSON in study system attributes, 2 KB per
attribute. Plotly's default template alone is ~6.5 KB of JSON, so tuner figures carry this
compact template instead, and round values before drawing them.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

# State -> colour, the same in every view so "orange" always means pruned.
STATE_COLORS: dict[str, str] = {
    "COMPLETE": "#2a9d8f",
    "PRUNED": "#f4a261",
    "FAIL": "#e63946",
    "RUNNING": "#457b9d",
    "WAITING": "#adb5bd",
}
BEST_COLOR = "#1d3557"

TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": "Arial, sans-serif", "size": 12, "color": "#222"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "colorway": list(STATE_COLORS.values()),
        "xaxis": {"gridcolor": "#eee", "zerolinecolor": "#ccc", "automargin": True},
        "yaxis": {"gridcolor": "#eee", "zerolinecolor": "#ccc", "automargin": True},
        "hoverlabel": {"align": "left"},
    }
)


def rounded(value: float | None, digits: int = 6) -> float | None:
    """``value`` to ``digits`` significant digits; ``None`` for missing or non-finite values."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def title(headline: str, detail: str | None = None) -> dict[str, object]:
    """A figure title: bold headline, optional smaller second line."""
    text = f"<b>{headline}</b>"
    if detail:
        text += f"<br><sup>{detail}</sup>"
    return {"text": text, "x": 0.01, "xanchor": "left"}
