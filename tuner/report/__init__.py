"""Figures and the offline HTML report of a study, and export of trial artifacts.

The pruning and fleet figures are drawn here once and used twice: registered on the study
for optuna-dashboard (:mod:`tuner.dashboard`) and embedded in the report.
"""

from tuner.report._data import PruningSummary, WorkerRecord, pruning_summary, worker_records
from tuner.report._fleet import fleet_status_figure, fleet_timeline_figure
from tuner.report._html import ReportError, render_report, write_report
from tuner.report._pruning import pruning_figure
from tuner.report._weights import (
    LEARNING_CURVE_ARTIFACT,
    WEIGHTS_ARTIFACT,
    ArtifactError,
    best_trial,
    export_best_weights,
    export_trial_artifact,
)

__all__ = [
    "LEARNING_CURVE_ARTIFACT",
    "WEIGHTS_ARTIFACT",
    "ArtifactError",
    "PruningSummary",
    "ReportError",
    "WorkerRecord",
    "best_trial",
    "export_best_weights",
    "export_trial_artifact",
    "fleet_status_figure",
    "fleet_timeline_figure",
    "pruning_figure",
    "pruning_summary",
    "render_report",
    "worker_records",
    "write_report",
]
