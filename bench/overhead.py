"""Orchestration overhead per trial: tuner's worker path against plain Optuna, same PostgreSQL.

One trial is: ask, suggest 6 float parameters, 20 ``trial.report`` calls, tell; the objective
does nothing else. Both sides use Optuna's ``RandomSampler`` (seeded) and no pruner, so what
is timed is storage and orchestration, not sampling or training.

Systems (``--systems``):

* ``optuna``: plain Optuna as its documentation writes it: ``optuna.load_study(storage=
  "postgresql+psycopg2://...")`` (``RDBStorage``, which Optuna wraps in its trial cache) and
  ``study.optimize``; W workers are W processes, each optimising its share of the trials.
* ``tuner``: tuner's worker path, ``tuner.fleet.run_worker`` (study lock, exact budget count,
  stale-trial reaping, heartbeats and worker records, all with their defaults) on
  ``postgresql+journal://``: Optuna's journal storage in a PostgreSQL table, with a running
  trial's parameters and intermediate values sent in batches (tuner/storage/_pg_journal.py).
  W workers are W processes sharing one budget of N trials.
* ``tuner-rdb``: the same worker path on ``postgresql+psycopg2://`` (Optuna's RDBStorage):
  what tuner costs without the journal. Slow; ``--rdb-worker NxW`` runs one configuration.

Definitions (all times from ``time.monotonic()`` at each objective call, in every process):

* per trial: the interval between consecutive trial starts over the whole fleet (all
  workers' objective calls merged in time order); median and p95 of those intervals, and the
  mean = wall time from the start signal (every process imported and waiting) to the last
  worker's exit, divided by the trials (over a window of trials: from its first trial start to
  its last). The mean is the fleet's cost per trial, the worker's own locking, counting,
  heartbeats, start-up and end included. With one worker an interval is the whole loop of one
  trial.
* cycle: in one worker, the time from one objective call to its next one; with W workers it
  includes waiting for the others (the study lock), so it is a latency, not a cost.

Trial counts: at N <= ``--window`` both systems run N trials on an empty study. At larger N,
plain Optuna would need about 40 minutes per configuration here, so its study is first filled
with N - window finished trials of the same shape (6 parameters, 1 value, 20 intermediate
values; inserted with SQL into Optuna's schema, then checked through Optuna) and ``window``
trials are run; tuner runs all N trials from an empty study. Figures at large N are over the
trials numbered N - window and up on both sides, so both are measured at the same study
size; tuner's first ``window`` trials are reported too, to show how its cost moves with N.

The last line is the figure: per configuration N x W, tuner / optuna for the median and the
mean per trial, and the largest of those ratios (goal: at most 0.25).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

N_PARAMS = 6
N_REPORTS = 20
SYSTEMS = ("optuna", "tuner", "tuner-rdb")
STUDY = "overhead"


@dataclass
class WorkerResult:
    """What one worker process measured: (trial number, monotonic time) per objective call."""

    entries: list[tuple[int, float]]
    end: float


@dataclass(frozen=True)
class Stats:
    """Per-trial figures over a set of trials, in milliseconds."""

    trials: int
    median: float
    p95: float
    mean: float
    cycle_median: float
    cycle_p95: float


@dataclass(frozen=True)
class Run:
    """One configuration's measurement."""

    system: str
    n_trials: int
    workers: int
    window: int
    stats: Stats  # over all trials, or over the last ``window`` when N > window
    early: Stats | None = None  # tuner at N > window: its first ``window`` trials
    whole: Stats | None = None  # tuner at N > window: the whole run

    @property
    def over(self) -> str:
        return "all" if self.n_trials <= self.window else f"last {self.window:,}"


# --- objectives (run inside the worker processes) -------------------------------------------

_entries: list[tuple[int, float]] = []


def _plain_objective(trial: Any) -> float:
    _entries.append((trial.number, time.monotonic()))
    value = sum(trial.suggest_float(f"x{i}", -1.0, 1.0) for i in range(N_PARAMS))
    for step in range(N_REPORTS):
        trial.report(value * (1 + 1 / (step + 1)), step)
    return value


def _tuner_objective(trial: Any) -> float:
    # tuner's worker has suggested the study file's search space before calling this.
    _entries.append((trial.number, time.monotonic()))
    value = sum(trial.params.values())
    for step in range(N_REPORTS):
        trial.report(value * (1 + 1 / (step + 1)), step)
    return value


def tuner_spec(n_trials: int) -> Any:
    """The study file of the tuner side: 6 floats, random sampler, exact budget of N."""
    from tuner.spec import StudySpec

    return StudySpec.model_validate(
        {
            "name": STUDY,
            "objective": {"model": "bench.overhead:objective", "direction": "minimize"},
            "search_space": {f"x{i}": {"low": -1.0, "high": 1.0} for i in range(N_PARAMS)},
            "sampler": {"type": "random", "seed": 0},
            "budget": {"n_trials": n_trials},
        }
    )


def _worker_main(
    system: str, url: str, share: int, n_trials: int, index: int, barrier: Any, queue: Any
) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if system == "optuna":
        study = optuna.load_study(
            study_name=STUDY, storage=url, sampler=optuna.samplers.RandomSampler(seed=index)
        )
        barrier.wait()
        study.optimize(_plain_objective, n_trials=share)
    else:
        from tuner.fleet import run_worker

        spec = tuner_spec(n_trials)
        barrier.wait()
        run_worker(spec, url, _tuner_objective)
    queue.put(WorkerResult(list(_entries), time.monotonic()))


# --- one configuration ----------------------------------------------------------------------


def _create_plain_study(url: str, n_done: int) -> None:
    """Create the plain study, filled with ``n_done`` finished trials of the benchmark's shape."""
    import optuna
    import sqlalchemy as sa
    from optuna.distributions import FloatDistribution, distribution_to_json

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name=STUDY)
    if n_done:
        fill = [
            "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete)"
            " SELECT g, :sid, 'COMPLETE', now() - interval '1 hour', now() - interval '1 hour'"
            " FROM generate_series(0, :n - 1) AS g",
            "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)"
            " SELECT t.trial_id, 'x' || p, random() * 2 - 1, :dist"
            " FROM trials AS t, generate_series(0, :params - 1) AS p WHERE t.study_id = :sid",
            "INSERT INTO trial_values (trial_id, objective, value, value_type)"
            " SELECT trial_id, 0, random(), 'FINITE' FROM trials WHERE study_id = :sid",
            "INSERT INTO trial_intermediate_values"
            " (trial_id, step, intermediate_value, intermediate_value_type)"
            " SELECT t.trial_id, s, random(), 'FINITE'"
            " FROM trials AS t, generate_series(0, :reports - 1) AS s WHERE t.study_id = :sid",
        ]
        values = {
            "sid": study._study_id,
            "n": n_done,
            "params": N_PARAMS,
            "reports": N_REPORTS,
            "dist": distribution_to_json(FloatDistribution(-1.0, 1.0)),
        }
        with storage.engine.begin() as connection:
            for statement in fill:
                connection.execute(sa.text(statement), values)
        check = optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
        if len(check) != n_done or len(check[-1].intermediate_values) != N_REPORTS:
            raise RuntimeError("filling the plain study did not give Optuna the expected trials")
    storage.engine.dispose()


def measure(system: str, n_trials: int, workers: int, window: int, keep: bool) -> Run:
    """Run one configuration on a fresh database and return its figures."""
    filled = n_trials - window if system == "optuna" and n_trials > window else 0
    database = _common.create_database(f"bench_overhead_{system.replace('-', '_')}")
    try:
        url = _common.pg_url(database)
        if system == "optuna":
            _create_plain_study(url, filled)
        if system == "tuner":
            url = _common.pg_url(database, "postgresql+journal")
        results, start = _run_processes(system, url, n_trials - filled, n_trials, workers)
    finally:
        if not keep:
            _common.drop_database(database)
    entries = sorted(e for r in results for e in r.entries)
    if len(entries) != n_trials - filled:
        raise RuntimeError(f"{system}: expected {n_trials - filled} trials, ran {len(entries)}")
    end = max(r.end for r in results)
    if n_trials <= window or filled:
        return Run(system, n_trials, workers, window, _stats(results, start, end))
    first = n_trials - window
    return Run(
        system,
        n_trials,
        workers,
        window,
        _stats(results, start, end, numbers=range(first, n_trials)),
        early=_stats(results, start, end, numbers=range(window)),
        whole=_stats(results, start, end),
    )


def _run_processes(
    system: str, url: str, to_run: int, n_trials: int, workers: int
) -> tuple[list[WorkerResult], float]:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["optuna", "sqlalchemy", "psycopg2", "tuner.fleet"])
    barrier = ctx.Barrier(workers + 1)
    queue = ctx.Queue()
    shares = [to_run // workers + (i < to_run % workers) for i in range(workers)]
    processes = [
        ctx.Process(target=_worker_main, args=(system, url, shares[i], n_trials, i, barrier, queue))
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    barrier.wait()
    start = time.monotonic()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"a {system} worker exited with {process.exitcode}")
    return results, start


def _stats(
    results: list[WorkerResult], start: float, end: float, numbers: range | None = None
) -> Stats:
    """Per-trial figures over the trials in ``numbers`` (all when None)."""
    merged = sorted((t, n) for r in results for n, t in r.entries)
    intervals = [
        t1 - t0
        for (t0, n0), (t1, _) in zip(merged[:-1], merged[1:], strict=True)
        if numbers is None or n0 in numbers
    ]
    cycles = [
        t1 - t0
        for r in results
        for (n0, t0), (_, t1) in zip(r.entries[:-1], r.entries[1:], strict=True)
        if numbers is None or n0 in numbers
    ]
    if numbers is None:  # the whole run: start-up and the last workers' exit included
        count, mean = len(merged), (end - start) / len(merged)
    else:  # steady state: from the window's first trial start to its last one
        mine = [t for t, n in merged if n in numbers]
        count, mean = len(mine), (max(mine) - min(mine)) / max(1, len(mine) - 1)
    return Stats(
        trials=count,
        median=_common.median(intervals) * 1e3,
        p95=_common.percentile(intervals, 95) * 1e3,
        mean=mean * 1e3,
        cycle_median=_common.median(cycles) * 1e3,
        cycle_p95=_common.percentile(cycles, 95) * 1e3,
    )


# --- report ---------------------------------------------------------------------------------

_RUN_HEADER = _common.table_header(
    ("system", "---"),
    ("trials", "---:"),
    ("workers", "---:"),
    ("figures over", "---"),
    ("per trial median (ms)", "---:"),
    ("per trial p95 (ms)", "---:"),
    ("per trial mean (ms)", "---:"),
    ("worker cycle median (ms)", "---:"),
    ("worker cycle p95 (ms)", "---:"),
)
_RATIO_HEADER = _common.table_header(
    ("trials", "---:"),
    ("workers", "---:"),
    ("median", "---:"),
    ("p95", "---:"),
    ("mean", "---:"),
)


def _row(system: str, n: int, w: int, over: str, s: Stats) -> str:
    return (
        f"| {system} | {n:,} | {w} | {over} | {s.median:.1f} | {s.p95:.1f} | {s.mean:.1f} "
        f"| {s.cycle_median:.1f} | {s.cycle_p95:.1f} |"
    )


def table(runs: list[Run]) -> str:
    lines = [_RUN_HEADER]
    for r in runs:
        lines.append(_row(r.system, r.n_trials, r.workers, r.over, r.stats))
        if r.early is not None and r.whole is not None:
            lines.append(_row(r.system, r.n_trials, r.workers, f"first {r.window:,}", r.early))
            lines.append(_row(r.system, r.n_trials, r.workers, "all", r.whole))
    return "\n".join(lines)


def ratios(runs: list[Run]) -> list[tuple[int, int, float, float, float]]:
    """(N, W, median, p95, mean) of tuner / optuna per configuration both ran."""
    base = {(r.n_trials, r.workers): r.stats for r in runs if r.system == "optuna"}
    out = []
    for r in runs:
        b = base.get((r.n_trials, r.workers))
        if r.system == "tuner" and b is not None:
            s = r.stats
            out.append((r.n_trials, r.workers, s.median / b.median, s.p95 / b.p95, s.mean / b.mean))
    return out


def growth(runs: list[Run]) -> list[str]:
    """How each system's per-trial cost moves with the study size."""
    lines = []
    for r in runs:
        if r.early is not None:
            lines.append(
                f"- {r.system}, {r.workers} worker(s), one run of {r.n_trials:,} trials: per "
                f"trial median {r.early.median:.1f} ms / mean {r.early.mean:.1f} ms over the "
                f"first {r.window:,}, {r.stats.median:.1f} / {r.stats.mean:.1f} ms over the last "
                f"{r.window:,} ({r.stats.mean / r.early.mean:.2f}x)"
            )
    by = {(r.system, r.n_trials, r.workers): r for r in runs}
    for (system, n, w), r in sorted(by.items()):
        for (s2, n2, w2), smaller in sorted(by.items()):
            if s2 == system and w2 == w and n2 < n:
                lines.append(
                    f"- {system}, {w} worker(s): per trial mean {smaller.stats.mean:.1f} ms at "
                    f"{n2:,} trials, {r.stats.mean:.1f} ms at {n:,} "
                    f"({r.stats.mean / smaller.stats.mean:.2f}x)"
                )
    return lines


def figure_line(runs: list[Run]) -> str:
    found = ratios(runs)
    parts = ", ".join(f"{n}x{w} median {m:.3f} mean {a:.3f}" for n, w, m, _, a in found)
    worst = max((max(m, a) for _, _, m, _, a in found), default=float("nan"))
    return f"overhead per trial, tuner/optuna: {parts}; max {worst:.3f} (goal <= 0.25)"


def section(runs: list[Run], env: _common.Environment, command: str, args: Any) -> str:
    ratio_rows = [
        f"| {n:,} | {w} | {m:.3f} | {p:.3f} | {a:.3f} |" for n, w, m, p, a in ratios(runs)
    ]
    title = "Orchestration overhead per trial (bench/overhead.py)"
    if args.section != "overhead":
        title += f": {args.section}"
    note = f"{args.note}\n\n" if args.note else ""
    return f"""## {title}

{note}Measured {_common.stamp()} (load average {args.load_before} before, {args.load_after} after;
the machine was shared with other work).

{env.markdown()}
- Command: `{command}`
- One trial: ask, suggest {N_PARAMS} floats, {N_REPORTS} reports, tell; `RandomSampler`, no
  pruner. `optuna` = plain `study.optimize` on Optuna's RDBStorage (`postgresql+psycopg2://`);
  `tuner` = `tuner.fleet.run_worker` with its defaults (study lock, exact budget, reaping,
  heartbeats every 5 s and at each trial's start and end) on `postgresql+journal://`
  (tuner/storage/_pg_journal.py); `tuner-rdb` = the same worker on `postgresql+psycopg2://`.
  W workers = W processes on this machine's {env.cores} cores, all on one PostgreSQL.
- Per trial: intervals between consecutive trial starts over the whole fleet (median, p95);
  mean = wall time from the start signal to the last worker's exit / trials for a whole run
  (start-up and the end of the study included), and (last start - first start) / (trials -
  1) over a window of the last or first trials. Worker cycle:
  one worker's time from a trial's start to its next one (with W workers it includes waiting
  for the others).
- Above {args.window:,} trials, plain Optuna's study is first filled with finished trials of
  the same shape and the last {args.window:,} are run; tuner runs every trial from an empty
  study. Both are compared over the trials numbered N - {args.window:,} and up.

{table(runs)}

tuner / optuna:

{_RATIO_HEADER}
{chr(10).join(ratio_rows)}

Growth with the trial count:

{chr(10).join(growth(runs)) or "- (one trial count only)"}

Figure: `{figure_line(runs)}`
"""


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--window", type=int, default=500, help="trials timed at large N")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=["optuna", "tuner"])
    parser.add_argument("--rdb-worker", metavar="NxW", help="also run tuner-rdb, e.g. 300x1")
    parser.add_argument("--quick", action="store_true", help="a small run for the tests")
    parser.add_argument("--results", type=Path, default=_common.RESULTS)
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument(
        "--section", default="overhead", help="the results section to write (its marker name)"
    )
    parser.add_argument("--note", default="", help="a sentence added to the section")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.workers, args.window = [8], [1, 2], 8
    command = _common.command_line()
    args.load_before = _load()
    configs = [(s, n, w) for n in args.trials for w in args.workers for s in args.systems]
    if args.rdb_worker:
        n, w = (int(x) for x in args.rdb_worker.lower().split("x"))
        configs.append(("tuner-rdb", n, w))
    runs = []
    for system, n, w in configs:
        print(f"{system}: {n} trials, {w} worker(s)...", flush=True)
        started = time.monotonic()
        run = measure(system, n, w, args.window, args.keep_databases)
        runs.append(run)
        s = run.stats
        print(
            f"  per trial median {s.median:.1f} ms, p95 {s.p95:.1f} ms, mean {s.mean:.1f} ms; "
            f"cycle median {s.cycle_median:.1f} ms ({time.monotonic() - started:.0f}s)",
            flush=True,
        )
    args.load_after = _load()
    env = _common.environment(_common.pg_url("postgres"))
    written = _common.write_section(args.section, section(runs, env, command, args), args.results)
    print(table(runs))
    print(f"results written to {written}")
    print(figure_line(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
