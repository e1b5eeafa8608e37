"""The browser dashboard: optuna-dashboard over the study storage, served safely.

Read-only unless writes are allowed, bound to loopback unless a token is given, and showing
tuner's pruning and fleet views as figures registered on each study.
"""

from tuner.dashboard._guard import SAFE_METHODS, TOKEN_COOKIE, TOKEN_QUERY
from tuner.dashboard._publish import (
    FLEET_STATUS_FIGURE_ID,
    FLEET_TIMELINE_FIGURE_ID,
    PRUNING_FIGURE_ID,
    FigurePublisher,
    FigureRefresher,
    publish_all,
    publish_study_figures,
)
from tuner.dashboard._server import (
    MIN_TOKEN_LENGTH,
    TOKEN_ENV,
    DashboardError,
    DashboardServer,
    InsecureBindError,
    check_bind,
    is_loopback_host,
    make_app,
    serve,
)

__all__ = [
    "FLEET_STATUS_FIGURE_ID",
    "FLEET_TIMELINE_FIGURE_ID",
    "MIN_TOKEN_LENGTH",
    "PRUNING_FIGURE_ID",
    "SAFE_METHODS",
    "TOKEN_COOKIE",
    "TOKEN_ENV",
    "TOKEN_QUERY",
    "DashboardError",
    "DashboardServer",
    "FigurePublisher",
    "FigureRefresher",
    "InsecureBindError",
    "check_bind",
    "is_loopback_host",
    "make_app",
    "publish_all",
    "publish_study_figures",
    "serve",
]
