"""``tuner launch`` and ``tuner worker``: running a study."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import optuna
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tuner.cli._common import (
    StorageOption,
    StudyFile,
    read_spec,
    setup_logging,
    storage_in_force,
)
from tuner.cli._render import summary_table
from tuner.errors import FleetError, SpecError
from tuner.fleet import (
    LocalFleet,
    Step,
    claim_gpu_slot_from_env,
    plan_workers,
    prepare_launch,
    run_worker,
    snapshot,
)
from tuner.fleet._launch import WORKER_GPU_ENV, WORKER_STORAGE_ENV
from tuner.fleet._records import HALTED_ATTR, study_attrs
from tuner.objectives._select import check_objective, load_objective, study_done_hook
from tuner.spec import StudySpec
from tuner.storage import is_disconnect, redact, retry_on_disconnect


def launch(
    study_file: StudyFile,
    storage: StorageOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, max=256, help="Number of local workers (default: from the file)."
        ),
    ] = None,
) -> None:
    """Create or resume a study and run it with local workers until the budget is spent.

    Example: tuner launch search_spaces/quick.yaml --workers 2
    """
    setup_logging()
    spec = read_spec(study_file)
    _check(spec, study_file)
    with storage_in_force(study_file, spec, storage) as url:
        study, step, why = prepare_launch(spec, url)
    console = Console()
    dash = f"tuner dashboard {study_file}" + (f" --storage '{redact(url)}'" if storage else "")
    if step is Step.DONE:
        console.print(f"Study [bold]{spec.name}[/] has nothing left to run: {why}.")
        console.print(summary_table(spec, snapshot(study), elapsed=None, dashboard_command=dash))
        return
    slots = plan_workers(spec.workers.per_gpu, spec.workers.cpu, override=workers)
    fleet = LocalFleet(study_file.resolve(), url, slots, spec.name)
    console.print(
        f"Study [bold]{spec.name}[/] on {redact(url)}: {len(slots)} worker(s) "
        f"({', '.join(f'GPU {s.gpu}' if s.gpu else 'CPU' for s in slots)}); "
        f"logs in {fleet.log_dir}"
    )
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    fleet.start()
    try:
        _follow(console, study, spec.budget.n_trials, fleet, stopping)
    finally:
        if stopping.is_set():
            console.print("Stopping workers (running trials are re-queued)...")
        fleet.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # The database may be on its way back from an outage that the workers waited out.
    final = retry_on_disconnect(lambda: snapshot(study), max_wait=60.0, what="summary")
    console.print(
        summary_table(spec, final, elapsed=time.monotonic() - started, dashboard_command=dash)
    )
    if stopping.is_set():
        raise typer.Exit(130)
    halted = retry_on_disconnect(
        lambda: study_attrs(study).get(HALTED_ATTR), max_wait=60.0, what="halt check"
    )
    if halted:
        raise FleetError(f"study {spec.name} {halted}")
    if any(code not in (0, None) for code in fleet.exit_codes()):
        raise FleetError(f"a worker exited with an error; see the logs in {fleet.log_dir}")


def _follow(
    console: Console,
    study: optuna.Study,
    n_trials: int | None,
    fleet: LocalFleet,
    stopping: threading.Event,
) -> None:
    """Show live progress from the storage until every worker has exited or a stop is asked."""
    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}" if n_trials else "{task.completed}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("trials", total=n_trials, detail="")
        while not stopping.is_set():
            try:
                snap = snapshot(study)
            except Exception as exc:
                if not is_disconnect(exc):
                    raise
                progress.update(task, detail="database unreachable; the workers wait for it")
                stopping.wait(1.0)
                continue
            t = snap.tally
            best = "-" if snap.best_value is None else f"{snap.best_value:.4g}"
            progress.update(
                task,
                completed=t.finished,
                detail=f"complete {t.complete} pruned {t.pruned} failed {t.failed} "
                f"running {t.running} | best {best}",
            )
            if fleet.running() == 0:
                break
            stopping.wait(1.0)


def worker(study_file: StudyFile, storage: StorageOption = None) -> None:
    """Run one worker that joins the study and pulls trials until the budget is spent.

    Start as many as you like, on any host that reaches the storage. A database that is not
    up yet (a fleet starting together with it) is waited for up to 60 s before giving up.

    Example: TUNER_STORAGE=postgresql+psycopg2://tuner@localhost:5432/tuner tuner worker
    search_spaces/quick.yaml
    """
    setup_logging(verbose=True)
    spec = read_spec(study_file)
    # Before the objective loads and CUDA starts: with TUNER_GPU_SLOTS_DIR set, this sets
    # CUDA_VISIBLE_DEVICES to a GPU no other worker on the host holds, until this process ends.
    claim_gpu_slot_from_env()
    _check(spec, study_file)
    objective = load_objective(spec, study_file.resolve().parent)
    # A launcher hands its workers the URL it resolved, standing in for --storage.
    with storage_in_force(study_file, spec, os.environ.get(WORKER_STORAGE_ENV) or storage) as url:
        report = run_worker(
            spec,
            url,
            objective,
            gpu=os.environ.get(WORKER_GPU_ENV),
            on_study_done=study_done_hook(spec),
        )
    outcomes = ", ".join(f"{n} {state.lower()}" for state, n in sorted(report.outcomes.items()))
    typer.echo(
        f"worker {report.worker_id} ran {report.trials_run} trial(s)"
        f"{f' ({outcomes})' if outcomes else ''}; stopped: {report.stop_reason}",
        err=True,
    )


def _check(spec: StudySpec, study_file: Path) -> None:
    """Reject an objective that cannot run, naming the study file."""
    try:
        check_objective(spec, study_file.resolve().parent)
    except SpecError as exc:
        raise SpecError(f"{study_file}: {exc}") from None
