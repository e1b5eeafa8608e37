"""The fleet: worker processes, the exact budget, heartbeats and crash recovery."""

from tuner.fleet._budget import Step, Tally, next_step, reap_stale_trials, tally
from tuner.fleet._gpu_slots import GpuSlot, claim_gpu_slot, claim_gpu_slot_from_env
from tuner.fleet._launch import (
    LocalFleet,
    Snapshot,
    WorkerSlot,
    plan_workers,
    prepare_launch,
    snapshot,
    visible_gpus,
)
from tuner.fleet._records import WorkerRecord, WorkerState, load_records
from tuner.fleet._study import find_study, open_study
from tuner.fleet._worker import WorkerInterrupted, WorkerReport, run_worker

__all__ = [
    "GpuSlot",
    "LocalFleet",
    "Step",
    "Tally",
    "WorkerInterrupted",
    "WorkerRecord",
    "WorkerReport",
    "WorkerSlot",
    "Snapshot",
    "prepare_launch",
    "snapshot",
    "WorkerState",
    "claim_gpu_slot",
    "claim_gpu_slot_from_env",
    "find_study",
    "load_records",
    "next_step",
    "open_study",
    "plan_workers",
    "reap_stale_trials",
    "run_worker",
    "tally",
    "visible_gpus",
]
