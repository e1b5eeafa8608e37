"""Fleet scaling on this machine: trials per minute with 1 and 2 CPU workers.

Runs ``tuner launch STUDY --workers W`` as a user would, once per worker count (and per
repeat), each on a fresh embedded storage (a new ``$TUNER_HOME``), with the same budget:
the study file's search space, sampler, seed and pruner, ``budget.n_trials`` set to
``--trials`` and no timeout, so both runs do the same number of trials.

Reported per worker count (median over repeats):

* trials/min: trials finished / minutes from the first trial's start to the last trial's
  end, read from the storage (the fleet at work, without process start-up);
* trials/min end to end: the same over the whole ``tuner launch`` command, start-up,
  data loading and the final test-split scoring included;
* epochs/min: epochs trained (the built-in objective's ``epochs_trained``) per minute. With
  a pruner, two runs do not train the same epochs, so this is the work-normalised speed-up.

The last line is the figure: the 2-worker / 1-worker ratio of trials per minute
(goal: at least 1.8).
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


@dataclass(frozen=True)
class Run:
    workers: int
    repeat: int
    trials: int
    epochs: int
    pruned: int
    fleet_seconds: float  # first trial start to last trial end
    launch_seconds: float  # the whole ``tuner launch`` command

    @property
    def trials_per_min(self) -> float:
        return self.trials / self.fleet_seconds * 60

    @property
    def trials_per_min_e2e(self) -> float:
        return self.trials / self.launch_seconds * 60

    @property
    def epochs_per_min(self) -> float:
        return self.epochs / self.fleet_seconds * 60


def study_document(study: Path, trials: int, name: str, epochs: int | None) -> dict[str, Any]:
    """The study file with the benchmark's budget (and, for --quick, fewer epochs)."""
    document = yaml.safe_load(study.read_text())
    document["name"] = name
    document["budget"] = {**document.get("budget", {}), "n_trials": trials}
    document["budget"].pop("timeout", None)
    document.pop("storage", None)
    if epochs is not None:
        document["objective"]["epochs"] = epochs
        pruner = document.get("pruner", {})
        if "max_resource" in pruner:
            pruner["max_resource"] = epochs
    return document


def run_once(
    study: Path, trials: int, workers: int, repeat: int, epochs: int | None, keep: bool
) -> Run:
    """One ``tuner launch`` on a fresh embedded storage."""
    from tuner.fleet import find_study
    from tuner.storage import open_storage

    home = Path(tempfile.mkdtemp(prefix=f"bench-scaling-{workers}w-"))
    name = f"scaling-{workers}w-{repeat}"
    study_file = home / f"{name}.yaml"
    study_file.write_text(yaml.safe_dump(study_document(study, trials, name, epochs)))
    env = {**os.environ, "TUNER_HOME": str(home / "data"), "PYTHONPATH": str(_common.REPO)}
    env.pop("TUNER_STORAGE", None)
    command = [sys.executable, "-m", "tuner", "launch", str(study_file), "--workers", str(workers)]
    try:
        started = time.monotonic()
        result = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True)
        launch_seconds = time.monotonic() - started
        if result.returncode != 0:
            raise RuntimeError(f"tuner launch failed:\n{result.stdout}\n{result.stderr}")
        url = f"journal://{home / 'data' / 'journal.log'}"
        finished = [
            t
            for t in find_study(name, open_storage(url)).get_trials(deepcopy=False)
            if t.state.is_finished()
        ]
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    first = min(t.datetime_start for t in finished if t.datetime_start)
    last = max(t.datetime_complete for t in finished if t.datetime_complete)
    return Run(
        workers=workers,
        repeat=repeat,
        trials=len(finished),
        epochs=sum(int(t.user_attrs.get("epochs_trained") or 0) for t in finished),
        pruned=sum(t.state.name == "PRUNED" for t in finished),
        fleet_seconds=(last - first).total_seconds(),
        launch_seconds=launch_seconds,
    )


def _by_workers(runs: list[Run]) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for w in sorted({r.workers for r in runs}):
        mine = [r for r in runs if r.workers == w]
        out[w] = {
            "trials_per_min": _common.median([r.trials_per_min for r in mine]),
            "trials_per_min_e2e": _common.median([r.trials_per_min_e2e for r in mine]),
            "epochs_per_min": _common.median([r.epochs_per_min for r in mine]),
        }
    return out


def figure_line(runs: list[Run]) -> str:
    summary = _by_workers(runs)
    low, high = min(summary), max(summary)
    ratio = summary[high]["trials_per_min"] / summary[low]["trials_per_min"]
    epochs = summary[high]["epochs_per_min"] / summary[low]["epochs_per_min"]
    return (
        f"scaling, trials/min: {low} worker {summary[low]['trials_per_min']:.2f}, "
        f"{high} workers {summary[high]['trials_per_min']:.2f}; ratio {ratio:.2f} "
        f"(epochs/min ratio {epochs:.2f}; goal >= 1.8)"
    )


_RUN_HEADER = _common.table_header(
    ("workers", "---:"),
    ("repeat", "---:"),
    ("trials", "---:"),
    ("pruned", "---:"),
    ("epochs", "---:"),
    ("fleet s", "---:"),
    ("launch s", "---:"),
    ("trials/min", "---:"),
    ("trials/min end to end", "---:"),
    ("epochs/min", "---:"),
)


def section(runs: list[Run], env: _common.Environment, command: str, args: Any) -> str:
    rows = [
        f"| {r.workers} | {r.repeat} | {r.trials} | {r.pruned} | {r.epochs} "
        f"| {r.fleet_seconds:.1f} | {r.launch_seconds:.1f} | {r.trials_per_min:.2f} "
        f"| {r.trials_per_min_e2e:.2f} | {r.epochs_per_min:.1f} |"
        for r in runs
    ]
    summary = _by_workers(runs)
    medians = [
        f"| {w} | {s['trials_per_min']:.2f} | {s['trials_per_min_e2e']:.2f} "
        f"| {s['epochs_per_min']:.1f} |"
        for w, s in summary.items()
    ]
    return f"""## Fleet scaling on this machine (bench/scaling.py)

Measured {_common.stamp()}.

{env.markdown()}
- Command: `{command}`
- Study: `{args.study}` with `budget.n_trials: {args.trials}` and no timeout
  {"(epochs: " + str(args.epochs) + ")" if args.epochs else ""}; each run is
  `tuner launch STUDY --workers W` on a fresh embedded storage; the launcher gives each
  worker cores / W threads.
- trials/min: from the first trial's start to the last trial's end (storage timestamps);
  end to end: the whole `tuner launch` command; epochs/min: epochs trained per minute.

{_RUN_HEADER}
{chr(10).join(rows)}

Medians:

| workers | trials/min | trials/min end to end | epochs/min |
|---:|---:|---:|---:|
{chr(10).join(medians)}

Figure: `{figure_line(runs)}`
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=Path("search_spaces/quick.yaml"))
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="override objective.epochs")
    parser.add_argument("--quick", action="store_true", help="a small run for the tests")
    parser.add_argument("--results", type=Path, default=_common.RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary storages")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.repeats, args.epochs = 2, 1, 2
    study = args.study if args.study.is_absolute() else _common.REPO / args.study
    command = _common.command_line()
    runs = []
    for repeat in range(args.repeats):
        # Alternate the order so a drift in the machine's load does not favour one side.
        order = args.workers if repeat % 2 == 0 else list(reversed(args.workers))
        for workers in order:
            print(f"repeat {repeat}: {workers} worker(s)...", flush=True)
            run = run_once(study, args.trials, workers, repeat, args.epochs, args.keep)
            runs.append(run)
            print(
                f"  {run.trials} trials ({run.pruned} pruned, {run.epochs} epochs) in "
                f"{run.fleet_seconds:.1f}s: {run.trials_per_min:.2f} trials/min",
                flush=True,
            )
    runs.sort(key=lambda r: (r.workers, r.repeat))
    env = _common.environment()
    written = _common.write_section("scaling", section(runs, env, command, args), args.results)
    print(f"results written to {written}")
    print(figure_line(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
