"""A study's trials in number order, kept current at the cost of what changed.

Optuna's journal replay lists a study's trials by walking all of them, and every worker lists
them before every trial it takes (the budget's count, under the study lock). At 10,000 trials
that walk was the largest part of a decision's own work, and it grew with the study.
"""

from __future__ import annotations

from optuna.storages.journal._storage import JournalStorageReplayResult
from optuna.trial import FrozenTrial


class TrialListing:
    """Each study's trials as one process's journal replay holds them, in number order.

    A finished trial never changes in the replay (it refuses every update to one), so the
    listing keeps its list and on each call refreshes only the trials it last saw unfinished
    and appends the new ones: a call costs the running and new trials, plus a list copy for
    the caller.
    """

    def __init__(self) -> None:
        self._trials: dict[int, list[FrozenTrial]] = {}  # study id -> its trials by number
        self._unfinished: dict[int, set[int]] = {}  # study id -> numbers last seen unfinished

    def all(self, replay: JournalStorageReplayResult, study_id: int) -> list[FrozenTrial]:
        """Every trial of the study, as a new list; ``KeyError`` for an unknown study."""
        return list(self._refreshed(replay, study_id))

    def unfinished(self, replay: JournalStorageReplayResult, study_id: int) -> list[FrozenTrial]:
        """The study's running and waiting trials, by number; ``KeyError`` as :meth:`all`."""
        listed = self._refreshed(replay, study_id)
        return [listed[number] for number in sorted(self._unfinished[study_id])]

    def _refreshed(self, replay: JournalStorageReplayResult, study_id: int) -> list[FrozenTrial]:
        if study_id not in replay._studies:  # never created, or deleted (ids are not reused)
            self._trials.pop(study_id, None)
            self._unfinished.pop(study_id, None)
            replay.get_study(study_id)  # raises Optuna's KeyError
        trial_ids = replay._study_id_to_trial_ids[study_id]
        listed = self._trials.setdefault(study_id, [])
        unfinished = self._unfinished.setdefault(study_id, set())
        for number in list(unfinished):
            listed[number] = replay._trials[trial_ids[number]]
            if listed[number].state.is_finished():
                unfinished.discard(number)
        for number in range(len(listed), len(trial_ids)):
            listed.append(replay._trials[trial_ids[number]])
            if not listed[number].state.is_finished():
                unfinished.add(number)
        return listed
