"""Pruning efficiency: the built-in LSTM and CNN studies with Hyperband and without pruning.

For each study file (default: search_spaces/lstm.yaml, LSTM on JapaneseVowels, and
search_spaces/cnn.yaml, 2-D CNN on scikit-learn's digits) and each seed, two runs with the
same sampler (the file's TPE, seeded with the seed) and the same trial budget:

* ``hyperband``: the file's Hyperband pruner (``max_resource`` = the epochs);
* ``none``: no pruning (the built-in early stopping of the file, ``patience``, stays on in
  both, as it is a training setting, not a pruner).

Each run is one ``tuner worker`` process (the service's worker path, with heartbeats and
the exact budget) on its own embedded journal, with one CPU thread; ``--parallel`` runs go
at once (the two runs of a seed start together, so both see the same machine load).

Measured per run, from the storage: epochs trained (the objective's ``epochs_trained``
attribute, pruned trials included), the best validation accuracy of the complete trials,
and the wall time from the first trial's start until the first complete trial reached the
no-pruning run's best accuracy minus 0.5 points (``--tolerance``).

The last line is the figure: epochs without pruning / epochs with Hyperband per study (the
sum over seeds), and the time-to-target ratio (goal: at least 3x fewer epochs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ARMS = ("hyperband", "none")


@dataclass(frozen=True)
class Job:
    study: str  # the study file's stem: lstm, cnn
    arm: str
    seed: int


@dataclass
class Result:
    job: Job
    trials: int
    complete: int
    pruned: int
    failed: int
    epochs: int
    best: float | None
    wall_seconds: float
    # (seconds since the run's first trial started, value) of each complete trial, in order
    progress: list[tuple[float, float]]

    def seconds_to(self, target: float) -> float | None:
        """When a complete trial first reached ``target`` (maximising), else None."""
        return next((t for t, value in self.progress if value >= target), None)


def study_document(path: Path, job: Job, trials: int, epochs: int | None) -> dict[str, Any]:
    """The study file for one run: its seed, pruner, budget (and, if given, epochs)."""
    document = yaml.safe_load(path.read_text())
    document["name"] = f"{job.study}-{job.arm}-seed{job.seed}"
    document.pop("storage", None)
    if epochs is not None:
        document["objective"]["epochs"] = epochs
    epochs_now = document["objective"].get("epochs", 20)
    document["sampler"] = {**document.get("sampler", {}), "seed": job.seed}
    if job.arm == "none":
        document["pruner"] = {"type": "none"}
    else:
        pruner = document.get("pruner") or {"type": "hyperband"}
        if pruner.get("type") != "hyperband":
            pruner = {"type": "hyperband", "min_resource": 1, "reduction_factor": 3}
        document["pruner"] = {**pruner, "max_resource": epochs_now}
    document["budget"] = {"n_trials": trials}
    return document


def start(job: Job, study_path: Path, folder: Path, trials: int, epochs: int | None) -> Any:
    """Start one run's ``tuner worker`` process."""
    run_dir = folder / f"{job.study}-{job.arm}-{job.seed}"
    run_dir.mkdir(parents=True)
    study_file = run_dir / "study.yaml"
    study_file.write_text(yaml.safe_dump(study_document(study_path, job, trials, epochs)))
    env = {
        **os.environ,
        "TUNER_HOME": str(run_dir / "home"),
        "TUNER_WORKER_STORAGE": f"journal://{run_dir / 'journal.log'}",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(_common.REPO),
    }
    env.pop("TUNER_STORAGE", None)
    log = open(run_dir / "worker.log", "wb")  # noqa: SIM115 - closed when the run ends
    process = subprocess.Popen(
        [sys.executable, "-m", "tuner", "worker", str(study_file)],
        cwd=run_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, log, run_dir


def collect(job: Job, run_dir: Path) -> Result:
    """Read one finished run's trials from its journal."""
    from tuner.fleet import find_study
    from tuner.storage import open_storage

    name = f"{job.study}-{job.arm}-seed{job.seed}"
    storage = open_storage(f"journal://{run_dir / 'journal.log'}")
    trials = [t for t in find_study(name, storage).get_trials(deepcopy=False)]
    finished = [t for t in trials if t.state.is_finished()]
    first = min(t.datetime_start for t in finished if t.datetime_start)
    last = max(t.datetime_complete for t in finished if t.datetime_complete)
    complete = sorted(
        (t for t in finished if t.state.name == "COMPLETE"), key=lambda t: t.datetime_complete
    )
    return Result(
        job=job,
        trials=len(finished),
        complete=len(complete),
        pruned=sum(t.state.name == "PRUNED" for t in finished),
        failed=sum(t.state.name == "FAIL" for t in finished),
        epochs=sum(
            int(t.user_attrs.get("epochs_trained") or len(t.intermediate_values)) for t in finished
        ),
        best=max((t.value for t in complete), default=None),
        wall_seconds=(last - first).total_seconds(),
        progress=[((t.datetime_complete - first).total_seconds(), t.value) for t in complete],
    )


def run_all(jobs: list[Job], args: Any, folder: Path) -> list[Result]:
    """Run ``jobs`` with at most ``args.parallel`` at once, in order."""
    waiting = list(jobs)
    running: list[tuple[Job, Any, Any, Path, float]] = []
    results = []
    while waiting or running:
        while waiting and len(running) < args.parallel:
            job = waiting.pop(0)
            path = args.study_files[job.study]
            process, log, run_dir = start(job, path, folder, args.trials, args.epochs)
            running.append((job, process, log, run_dir, time.monotonic()))
            print(f"started {job.study} {job.arm} seed {job.seed}", flush=True)
        time.sleep(0.5)
        for entry in list(running):
            job, process, log, run_dir, started = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            log.close()
            if process.returncode != 0:
                tail = (run_dir / "worker.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{job} failed ({process.returncode}):\n{tail}")
            result = collect(job, run_dir)
            results.append(result)
            print(
                f"  {job.study} {job.arm} seed {job.seed}: {result.epochs} epochs, "
                f"{result.pruned}/{result.trials} pruned, best {result.best}, "
                f"{time.monotonic() - started:.0f}s",
                flush=True,
            )
    return results


# --- report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    study: str
    seed: int
    hyperband: Result
    none: Result
    target: float
    hb_seconds: float | None
    none_seconds: float | None


def pairs(results: list[Result], tolerance: float) -> list[Pair]:
    by = {(r.job.study, r.job.arm, r.job.seed): r for r in results}
    out = []
    for study, seed in sorted({(r.job.study, r.job.seed) for r in results}):
        hb, none = by[(study, "hyperband", seed)], by[(study, "none", seed)]
        target = (none.best if none.best is not None else float("inf")) - tolerance
        out.append(
            Pair(study, seed, hb, none, target, hb.seconds_to(target), none.seconds_to(target))
        )
    return out


def _summary(all_pairs: list[Pair]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for study in sorted({p.study for p in all_pairs}):
        mine = [p for p in all_pairs if p.study == study]
        epochs_none = sum(p.none.epochs for p in mine)
        epochs_hb = sum(p.hyperband.epochs for p in mine)
        reached = [p for p in mine if p.hb_seconds is not None and p.none_seconds]
        out[study] = {
            "epoch_ratio": epochs_none / epochs_hb if epochs_hb else float("nan"),
            "reached": len(reached),
            "seeds": len(mine),
            "time_ratio": (
                _common.median([p.hb_seconds / p.none_seconds for p in reached])  # type: ignore[operator]
                if reached
                else None
            ),
        }
    return out


def figure_line(all_pairs: list[Pair]) -> str:
    parts = []
    for study, s in _summary(all_pairs).items():
        time_part = (
            f"time to target {s['time_ratio']:.2f}x ({s['reached']}/{s['seeds']} seeds reached)"
            if s["time_ratio"] is not None
            else f"time to target not reached ({s['reached']}/{s['seeds']} seeds)"
        )
        parts.append(f"{study} {s['epoch_ratio']:.2f}x fewer epochs, {time_part}")
    return f"pruning, Hyperband vs none: {'; '.join(parts)} (goal >= 3x fewer epochs)"


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.0f}"


_RUN_HEADER = _common.table_header(
    ("study", "---"),
    ("seed", "---:"),
    ("pruner", "---"),
    ("trials", "---:"),
    ("pruned", "---:"),
    ("failed", "---:"),
    ("epochs", "---:"),
    ("best val acc (%)", "---:"),
    ("wall s", "---:"),
    ("target (%)", "---:"),
    ("reached after (s)", "---:"),
)


_SUMMARY_HEADER = _common.table_header(
    ("study", "---"),
    ("epochs none / hyperband (sum over seeds)", "---:"),
    ("time to target, hyperband / none (median)", "---:"),
    ("seeds where hyperband reached it", "---:"),
)


def section(all_pairs: list[Pair], env: _common.Environment, command: str, args: Any) -> str:
    rows = []
    for p in all_pairs:
        for arm, r, reached in (
            ("hyperband", p.hyperband, p.hb_seconds),
            ("none", p.none, p.none_seconds),
        ):
            best = "-" if r.best is None else f"{r.best * 100:.2f}"
            rows.append(
                f"| {p.study} | {p.seed} | {arm} | {r.trials} | {r.pruned} | {r.failed} "
                f"| {r.epochs} | {best} | {r.wall_seconds:.0f} | {p.target * 100:.2f} "
                f"| {_seconds(reached)} |"
            )
    summary_rows = [
        f"| {study} | {s['epoch_ratio']:.2f}x | "
        + (f"{s['time_ratio']:.2f}x" if s["time_ratio"] is not None else "-")
        + f" | {s['reached']}/{s['seeds']} |"
        for study, s in _summary(all_pairs).items()
    ]
    files = ", ".join(f"`{p.relative_to(_common.REPO)}`" for p in args.study_files.values())
    epochs = (
        f"{args.epochs}"
        if args.epochs
        else "as in the file ("
        + ", ".join(
            f"{name} {yaml.safe_load(path.read_text())['objective'].get('epochs', 20)}"
            for name, path in args.study_files.items()
        )
        + ")"
    )
    return f"""## Pruning efficiency (bench/pruning.py)

Measured {_common.stamp()}.

{env.markdown()}
- Command: `{command}`
- Studies: {files}, each with the file's search space and TPE sampler seeded with the seed,
  `budget.n_trials: {args.trials}`, epochs {epochs}; `hyperband` = the file's Hyperband
  (`max_resource` = epochs), `none` = no pruner. Seeds: {", ".join(map(str, args.seeds))}.
  Each run is one `tuner worker` process with one CPU thread on its own embedded journal;
  {args.parallel} runs at a time, started in the order seed, study, pruner (so the two runs
  of a study and seed start together or one run apart).
- Target: the `none` run's best validation accuracy minus {args.tolerance * 100:g} points;
  "reached after" is the wall time from the run's first trial start to the completion of
  the first complete trial at or above it.

{_RUN_HEADER}
{chr(10).join(rows)}

{_SUMMARY_HEADER}
{chr(10).join(summary_rows)}

Figure: `{figure_line(all_pairs)}`
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--studies",
        type=Path,
        nargs="+",
        default=[Path("search_spaces/lstm.yaml"), Path("search_spaces/cnn.yaml")],
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=None, help="override objective.epochs")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    parser.add_argument("--tolerance", type=float, default=0.005, help="0.005 = 0.5 points")
    parser.add_argument("--quick", action="store_true", help="a small run for the tests")
    parser.add_argument("--results", type=Path, default=_common.RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.epochs = [0], 2, 2
    args.study_files = {
        p.stem: (p if p.is_absolute() else _common.REPO / p).resolve() for p in args.studies
    }
    command = _common.command_line()
    jobs = [
        Job(study, arm, seed) for seed in args.seeds for study in args.study_files for arm in ARMS
    ]
    folder = Path(tempfile.mkdtemp(prefix="bench-pruning-"))
    try:
        results = run_all(jobs, args, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    all_pairs = pairs(results, args.tolerance)
    env = _common.environment()
    written = _common.write_section("pruning", section(all_pairs, env, command, args), args.results)
    print(f"results written to {written}")
    print(figure_line(all_pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
