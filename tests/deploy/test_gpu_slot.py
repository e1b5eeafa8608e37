"""Each replica of the GPU worker claims a GPU of its own, with fake GPU lists and nvidia-smi.

Replicas of one compose service all see every GPU; the slot locks in TUNER_GPU_SLOTS_DIR are
what spread them. Here a "replica" is a claim in this process, a thread, another process or a
real ``tuner worker``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.study import load_trials, run_tuner, write_study
from typer.testing import CliRunner

from tuner.cli import app
from tuner.fleet import GpuSlot, claim_gpu_slot, claim_gpu_slot_from_env
from tuner.fleet._records import GPU_ATTR

WORKER_ENV = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "TUNER_WORKER_GPU")


def fake_nvidia_smi(folder: Path, gpus: str) -> Path:
    """A folder whose nvidia-smi lists ``gpus`` (one index per line), for PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "nvidia-smi"
    fake.write_text(f'#!/bin/sh\nprintf "{gpus}"\n')
    fake.chmod(0o755)
    return folder


@pytest.fixture
def slots() -> Iterator[list[GpuSlot]]:
    """Claims made by a test, released at its end."""
    claimed: list[GpuSlot] = []
    yield claimed
    for slot in claimed:
        slot.release()


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A two-GPU host for claim_gpu_slot_from_env: nvidia-smi lists 0 and 1, nothing pinned.

    Returns the slots folder that TUNER_GPU_SLOTS_DIR names.
    """
    bin_dir = fake_nvidia_smi(tmp_path / "bin", "0\\n1\\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for name in (*WORKER_ENV, "TUNER_WORKERS_PER_GPU"):
        monkeypatch.setenv(name, "unset")  # so that monkeypatch restores what the claim sets
        monkeypatch.delenv(name)
    slots_dir = tmp_path / "slots"
    monkeypatch.setenv("TUNER_GPU_SLOTS_DIR", str(slots_dir))
    return slots_dir


def test_claims_fill_the_gpus_breadth_first(tmp_path: Path, slots: list[GpuSlot]) -> None:
    for _ in range(4):
        slot = claim_gpu_slot(tmp_path / "slots", 2, gpus=["0", "1"])
        assert slot is not None
        slots.append(slot)
    assert [(s.gpu, s.slot) for s in slots] == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
    assert sorted(p.name for p in (tmp_path / "slots").iterdir()) == [
        "gpu0-slot0", "gpu0-slot1", "gpu1-slot0", "gpu1-slot1",
    ]  # fmt: skip


def test_a_released_slot_is_taken_again(tmp_path: Path, slots: list[GpuSlot]) -> None:
    first = claim_gpu_slot(tmp_path, 1, gpus=["0", "1"])
    second = claim_gpu_slot(tmp_path, 1, gpus=["0", "1"])
    assert first is not None and second is not None
    slots += [first, second]
    first.release()
    again = claim_gpu_slot(tmp_path, 1, gpus=["0", "1"], poll_seconds=0.05)
    assert again is not None
    slots.append(again)
    assert again.gpu == first.gpu == "0"


def test_a_slot_held_by_another_process_is_skipped(tmp_path: Path, slots: list[GpuSlot]) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from tuner.fleet import claim_gpu_slot
            slot = claim_gpu_slot(Path({str(tmp_path)!r}), 1, gpus=["0", "1"])
            print(slot.gpu, flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "0"
        mine = claim_gpu_slot(tmp_path, 1, gpus=["0", "1"])
        assert mine is not None
        slots.append(mine)
        assert mine.gpu == "1"
    finally:
        holder.communicate("", timeout=10)
    # The holder exited without releasing: its lock went with it.
    freed = claim_gpu_slot(tmp_path, 1, gpus=["0", "1"], poll_seconds=0.05)
    assert freed is not None
    slots.append(freed)
    assert freed.gpu == "0"


def test_when_every_slot_is_taken_a_claim_waits_for_one_to_free(
    tmp_path: Path, slots: list[GpuSlot], caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):
        slot = claim_gpu_slot(tmp_path, 1, gpus=["0", "1"])
        assert slot is not None
        slots.append(slot)
    got: list[GpuSlot | None] = []
    waiter = threading.Thread(
        target=lambda: got.append(claim_gpu_slot(tmp_path, 1, gpus=["0", "1"], poll_seconds=0.05)),
        daemon=True,
    )
    with caplog.at_level("INFO", logger="tuner.fleet"):
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and not got, "every slot is taken, so the claim must wait"
        slots[1].release()
        waiter.join(10)
    assert not waiter.is_alive()
    (third,) = got
    assert third is not None
    slots.append(third)
    assert third.gpu == "1"
    assert "all 2 GPU slots are taken (2 GPU(s) x 1 per GPU); waiting for one to free" in (
        caplog.text
    )


def test_without_a_gpu_there_is_nothing_to_claim(tmp_path: Path) -> None:
    assert claim_gpu_slot(tmp_path / "slots", 1, gpus=[]) is None
    assert not (tmp_path / "slots").exists()


def test_from_env_pins_the_worker_to_its_slot(host: Path, slots: list[GpuSlot]) -> None:
    os.environ["TUNER_WORKERS_PER_GPU"] = "2"
    slot = claim_gpu_slot_from_env()
    assert slot is not None
    slots.append(slot)
    assert (slot.gpu, slot.slot, slot.per_gpu, slot.path) == ("0", 0, 2, host / "gpu0-slot0")
    assert {name: os.environ[name] for name in WORKER_ENV} == {
        "CUDA_VISIBLE_DEVICES": "0",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "TUNER_WORKER_GPU": "0",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"CUDA_VISIBLE_DEVICES": "1"},  # a pinned service: keep its GPU
        {"TUNER_GPU_SLOTS_DIR": ""},  # not the GPU worker service
        {"PATH": "NO_NVIDIA_SMI"},  # no nvidia-smi: no GPU to hand out
    ],
)
def test_from_env_leaves_the_worker_alone_otherwise(
    host: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, str]
) -> None:
    for name, value in change.items():
        if value == "NO_NVIDIA_SMI":
            (tmp_path / "empty").mkdir()
            value = str(tmp_path / "empty")
        monkeypatch.setenv(name, value)
    assert claim_gpu_slot_from_env() is None
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == change.get("CUDA_VISIBLE_DEVICES")
    assert "TUNER_WORKER_GPU" not in os.environ
    assert not host.exists()


def test_worker_rejects_a_bad_workers_per_gpu(host: Path, tmp_path: Path) -> None:
    study = write_study(tmp_path, "slots-bad-env")
    result = CliRunner().invoke(app, ["worker", str(study)], env={"TUNER_WORKERS_PER_GPU": "two"})
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (
        "Error: TUNER_WORKERS_PER_GPU must be a whole number >= 1, got 'two'"
    )
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_tuner_worker_runs_its_trials_on_the_slot_it_claimed(
    tmp_path: Path, slots: list[GpuSlot]
) -> None:
    """A real ``tuner worker`` on a host where another replica already holds GPU 0."""
    (tmp_path / "seen_gpu.py").write_text(
        textwrap.dedent("""
            import os

            def objective(trial):
                for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
                    trial.set_user_attr(name, os.environ.get(name))
                return (trial.params["x"] - 1.0) ** 2
        """)
    )
    study = write_study(
        tmp_path,
        "slots-worker",
        objective={"model": "seen_gpu:objective", "direction": "minimize"},
        search_space={"x": {"low": -10.0, "high": 10.0}},
        budget={"n_trials": 3},
    )
    slots_dir = tmp_path / "slots"
    other_replica = claim_gpu_slot(slots_dir, 1, gpus=["0"])
    assert other_replica is not None
    slots.append(other_replica)
    bin_dir = fake_nvidia_smi(tmp_path / "bin", "0\\n1\\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "TUNER_"))}
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TUNER_GPU_SLOTS_DIR": str(slots_dir),
        "TUNER_HOME": str(tmp_path / "home"),
    }
    url = f"journal://{tmp_path / 'journal.log'}"
    result = run_tuner("worker", str(study), "--storage", url, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "GPU 1, worker 1 of 1 on it" in result.stderr
    trials = load_trials("slots-worker", url)
    assert len(trials) == 3
    for trial in trials:
        assert trial.user_attrs[GPU_ATTR] == "1"
        assert trial.user_attrs["CUDA_VISIBLE_DEVICES"] == "1"
        assert trial.user_attrs["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
