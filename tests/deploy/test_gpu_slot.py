"""docker/gpu-slot gives each replica of the GPU worker its own GPU, with a fake nvidia-smi.

Replicas of one compose service all see every GPU; the script is what spreads them. Here
each "replica" is a process running the script with a command that reports the GPU it got.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from compose_support import REPO

SCRIPT = REPO / "docker" / "gpu-slot"
REPORT = 'echo "$CUDA_VISIBLE_DEVICES $TUNER_WORKER_GPU" > "$OUT"; sleep "$HOLD"'


@pytest.fixture
def host(tmp_path: Path) -> dict[str, str]:
    """An environment whose nvidia-smi lists two GPUs, and a folder shared by the replicas."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text('#!/bin/sh\nprintf "0\\n1\\n"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "TUNER_"))}
    return env | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TUNER_GPU_SLOTS_DIR": str(tmp_path / "slots"),
        "TUNER_GPU_SLOT_POLL": "0.1",
    }


def start(env: dict[str, str], out: Path, hold: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPT), "sh", "-c", REPORT],
        env=env | {"OUT": str(out), "HOLD": str(hold)},
        stderr=subprocess.PIPE,
        text=True,
    )


def gpus_of(outs: list[Path]) -> list[str]:
    values = []
    for out in outs:
        visible, recorded = out.read_text().split()
        assert visible == recorded
        values.append(visible)
    return values


def wait_for(paths: list[Path], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not all(p.exists() and p.read_text() for p in paths):
        assert time.monotonic() < deadline, "the replicas did not start"
        time.sleep(0.05)


def test_replicas_get_distinct_gpus_and_a_third_waits_for_a_free_one(
    host: dict[str, str], tmp_path: Path
) -> None:
    outs = [tmp_path / f"replica-{i}" for i in range(3)]
    first = [start(host, outs[0], 1.5), start(host, outs[1], 1.5)]
    wait_for(outs[:2])
    assert sorted(gpus_of(outs[:2])) == ["0", "1"]

    third = start(host, outs[2], 0)
    time.sleep(0.5)
    assert not outs[2].exists(), "every slot is taken, so the third replica must wait"
    for process in first:
        assert process.wait(10) == 0
    assert third.wait(10) == 0
    assert gpus_of(outs[2:]) in (["0"], ["1"])
    assert "waiting for one to free" in third.stderr.read()  # type: ignore[union-attr]


def test_several_workers_per_gpu_fill_the_gpus_evenly(host: dict[str, str], tmp_path: Path) -> None:
    outs = [tmp_path / f"replica-{i}" for i in range(4)]
    env = host | {"TUNER_WORKERS_PER_GPU": "2"}
    processes = [start(env, out, 1) for out in outs]
    wait_for(outs)
    assert Counter(gpus_of(outs)) == {"0": 2, "1": 2}
    assert all(p.wait(10) == 0 for p in processes)


@pytest.mark.parametrize(
    "change",
    [
        {"CUDA_VISIBLE_DEVICES": "1"},  # a pinned service: keep its GPU
        {"TUNER_GPU_SLOTS_DIR": ""},  # not the GPU worker service
        {"PATH": "/usr/bin:/bin"},  # no nvidia-smi: no GPU to hand out
    ],
)
def test_runs_the_command_unchanged_otherwise(
    host: dict[str, str], tmp_path: Path, change: dict[str, str]
) -> None:
    env = host | change
    result = subprocess.run(
        [str(SCRIPT), "sh", "-c", 'echo "${CUDA_VISIBLE_DEVICES:-none}"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == change.get("CUDA_VISIBLE_DEVICES", "none")


def test_rejects_a_bad_workers_per_gpu(host: dict[str, str]) -> None:
    result = subprocess.run(
        [str(SCRIPT), "true"],
        env=host | {"TUNER_WORKERS_PER_GPU": "two"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 64
    assert "TUNER_WORKERS_PER_GPU must be a whole number >= 1, got 'two'" in result.stderr
