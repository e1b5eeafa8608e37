"""A worker's running count of the budget agrees with a count from scratch at every step.

Workers keep a :class:`~tuner.fleet._budget.Ledger` for their whole life and let it look only
at new and unfinished trials; if it drifted from the true count, the budget would stop being
exact. These tests drive a real (in-memory) study through the fleet's own failure, re-run and
void paths in random orders and compare the ledger with a plain recount after each change.
"""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState

from tuner.fleet._budget import Ledger, Tally, fail_and_requeue, next_step, void_trial
from tuner.fleet._records import ATTEMPT_ATTR, RETRY_OF_ATTR, VOID_ATTR
from tuner.spec import StudySpec


def _spec(n_trials: int = 1000, max_retries: int = 2) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "ledger",
            "objective": {"model": "helpers.objectives:quadratic", "direction": "minimize"},
            "search_space": {"x": {"low": 0.0, "high": 1.0}},
            "budget": {"n_trials": n_trials, "max_retries": max_retries, "failure_window": 1000},
        }
    )


def _recount(trials: list[optuna.trial.FrozenTrial]) -> Tally:
    """What the budget means, spelled out: every trial not replaced, by state."""
    replaced = {int(t.user_attrs[RETRY_OF_ATTR]) for t in trials if RETRY_OF_ATTR in t.user_attrs}
    replaced |= {t.number for t in trials if t.user_attrs.get(VOID_ATTR)}
    kept = [t for t in trials if t.number not in replaced]

    def count(state: TrialState) -> int:
        return sum(1 for t in kept if t.state is state)

    return Tally(
        complete=count(TrialState.COMPLETE),
        pruned=count(TrialState.PRUNED),
        failed=count(TrialState.FAIL),
        running=count(TrialState.RUNNING),
        waiting=count(TrialState.WAITING),
        replaced=len(replaced),
    )


def _random_history(seed: int, steps: int = 120) -> None:
    """Run a study through ``steps`` random fleet events, checking the ledger after each."""
    rng = random.Random(seed)
    spec = _spec()
    study = optuna.create_study(direction="minimize")
    ledger = Ledger()
    for _ in range(steps):
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        event = rng.choice(["ask", "ask", "complete", "prune", "fail", "lost", "void", "check"])
        if event == "ask" or not running:
            study.ask()  # a new trial, or a queued re-run popped
        elif event == "complete":
            study.tell(rng.choice(running).number, rng.random())
        elif event == "prune":
            study.tell(rng.choice(running).number, state=TrialState.PRUNED)
        elif event == "fail":
            study.tell(rng.choice(running).number, state=TrialState.FAIL)
        elif event == "lost":  # a worker went silent: failed, re-run queued if retries are left
            fail_and_requeue(study, spec, rng.choice(running), "worker lost")
        elif event == "void":
            void_trial(study, rng.choice(running).number, "lock lost")
        trials = study.get_trials(deepcopy=False)
        assert ledger.update(trials) == _recount(trials), f"after {event}"


@pytest.mark.parametrize("seed", range(12))
def test_a_running_ledger_matches_a_recount_through_failures_reruns_and_voids(seed: int) -> None:
    _random_history(seed)


def test_a_rerun_queued_for_an_old_trial_takes_it_out_of_the_count() -> None:
    spec = _spec()
    study = optuna.create_study(direction="minimize")
    ledger = Ledger()
    lost = study.ask()
    for _ in range(5):
        study.tell(study.ask(), 1.0)
    assert ledger.update(study.get_trials()).finished == 5  # trial 0 still running
    fail_and_requeue(study, spec, study.get_trials()[lost.number], "worker lost")
    counts = ledger.update(study.get_trials())
    assert (counts.finished, counts.waiting, counts.replaced) == (5, 1, 1)
    study.tell(study.ask(), 2.0)  # the re-run pops and completes
    counts = ledger.update(study.get_trials())
    assert (counts.complete, counts.failed, counts.waiting) == (6, 0, 0)


def test_a_rerun_seen_after_its_failure_was_counted_uncounts_it() -> None:
    # Another worker may decide between a trial's failure and the queueing of its re-run.
    study = optuna.create_study(direction="minimize")
    ledger = Ledger()
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    assert ledger.update(study.get_trials()).failed == 1
    study.enqueue_trial({}, user_attrs={RETRY_OF_ATTR: trial.number, ATTEMPT_ATTR: 1})
    counts = ledger.update(study.get_trials())
    assert (counts.failed, counts.waiting, counts.replaced) == (0, 1, 1)


def test_next_step_with_a_kept_ledger_stops_at_exactly_n_trials() -> None:
    spec = _spec(n_trials=7)
    study = optuna.create_study(direction="minimize")
    ledger = Ledger()
    runs = 0
    while True:
        step, why = next_step(study, spec, ledger=ledger)
        if step.value != "run":
            break
        trial = study.ask()
        if runs % 3 == 2:  # every third trial's worker dies: failed and re-run
            fail_and_requeue(study, spec, study.get_trials()[trial.number], "worker lost")
        else:
            study.tell(trial, float(runs))
        runs += 1
    assert why == "budget of 7 trials spent"
    assert _recount(study.get_trials()).finished == 7
