"""GPU slots: each ``tuner worker`` on a host claims a GPU that no other worker there is using.

Why: ``docker compose up --scale worker=N`` gives every replica the same device request, and
Docker turns ``count: K`` into the first K GPUs for every container: with ``count: 1`` all N
replicas would share GPU 0. So the worker service reserves all GPUs and each worker claims one
slot here: an exclusive ``flock`` on ``<slots dir>/gpu<G>-slot<S>``, in a folder (a volume) that
the workers on this host share. The kernel drops the lock when the process exits, however it
exits, so a crashed worker's slot frees itself.

There are (visible GPUs) x (workers per GPU) slots, taken breadth-first (gpu0-slot0,
gpu1-slot0, ..., gpu0-slot1, ...), so workers spread evenly over the GPUs. When every slot is
taken the worker waits for one to free.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tuner.errors import FleetError
from tuner.fleet._launch import WORKER_GPU_ENV, visible_gpus

SLOTS_DIR_ENV = "TUNER_GPU_SLOTS_DIR"
PER_GPU_ENV = "TUNER_WORKERS_PER_GPU"

_log = logging.getLogger(__name__)


@dataclass
class GpuSlot:
    """A claimed slot: GPU ``gpu``, worker ``slot + 1`` of ``per_gpu`` on it.

    ``fd`` holds the lock (-1 once released). It is a bare descriptor, which the garbage
    collector never closes, so the slot stays taken until :meth:`release` or the end of the
    process.
    """

    gpu: str
    slot: int
    per_gpu: int
    path: Path
    fd: int

    def release(self) -> None:
        """Free the slot for another worker (closing the descriptor drops the lock)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def claim_gpu_slot(
    slots_dir: Path,
    per_gpu: int,
    *,
    poll_seconds: float = 5.0,
    gpus: list[str] | None = None,
) -> GpuSlot | None:
    """Take a free slot in ``slots_dir``, waiting for one when all are taken.

    Args:
        slots_dir: the folder shared by the workers on this host; created if missing.
        per_gpu: how many workers may share one GPU (slots per GPU), at least 1.
        poll_seconds: how often to look again while every slot is taken.
        gpus: the GPUs to hand out; default :func:`visible_gpus` (``CUDA_VISIBLE_DEVICES``,
            else what nvidia-smi lists).

    Returns:
        The claimed slot, or None when no GPU is visible (the worker runs on the CPU).

    Raises:
        FleetError: ``per_gpu`` is below 1.
    """
    if per_gpu < 1:
        raise FleetError(f"workers per GPU must be >= 1, got {per_gpu}")
    gpus = visible_gpus() if gpus is None else gpus
    if not gpus:
        _log.info("no GPU visible; running on the CPU")
        return None
    slots_dir.mkdir(parents=True, exist_ok=True)
    waiting = False
    while True:
        for slot in range(per_gpu):
            for gpu in gpus:
                claimed = _try_lock(slots_dir / f"gpu{gpu}-slot{slot}", gpu, slot, per_gpu)
                if claimed is not None:
                    _log.info("GPU %s, worker %d of %d on it", gpu, slot + 1, per_gpu)
                    return claimed
        if not waiting:
            _log.warning(
                "all %d GPU slots are taken (%d GPU(s) x %d per GPU); waiting for one to free",
                len(gpus) * per_gpu,
                len(gpus),
                per_gpu,
            )
            waiting = True
        time.sleep(poll_seconds)


def _try_lock(path: Path, gpu: str, slot: int, per_gpu: int) -> GpuSlot | None:
    """The slot at ``path`` if no one holds it. Each call opens the file anew: flock locks
    belong to the open file, so two claims in one process conflict as two processes do."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return GpuSlot(gpu, slot, per_gpu, path, fd)


def claim_gpu_slot_from_env(*, poll_seconds: float = 5.0) -> GpuSlot | None:
    """Pin this worker to a GPU slot of its own when ``TUNER_GPU_SLOTS_DIR`` asks for it.

    Call it before CUDA starts (before the objective is loaded). On a claim it sets
    ``CUDA_VISIBLE_DEVICES`` (the objective then sees its GPU as ``cuda:0``),
    ``TUNER_WORKER_GPU`` (recorded on the trials) and ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (so
    CUDA numbers GPUs as nvidia-smi does). ``TUNER_WORKERS_PER_GPU`` (default 1) sets the
    slots per GPU.

    Does nothing and returns None when ``TUNER_GPU_SLOTS_DIR`` is unset or empty, when
    ``CUDA_VISIBLE_DEVICES`` is already set (a pinned worker keeps its GPU) or when no GPU is
    visible.

    Raises:
        FleetError: ``TUNER_WORKERS_PER_GPU`` is not a whole number >= 1.
    """
    slots_dir = os.environ.get(SLOTS_DIR_ENV, "")
    if not slots_dir or "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    raw = os.environ.get(PER_GPU_ENV, "1")
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise FleetError(f"{PER_GPU_ENV} must be a whole number >= 1, got {raw!r}")
    slot = claim_gpu_slot(Path(slots_dir), int(raw), poll_seconds=poll_seconds)
    if slot is not None:
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu
        os.environ[WORKER_GPU_ENV] = slot.gpu
    return slot
