"""GPU throughput: trials per hour for the built-in LSTM study on one GPU, 1 to 8 workers.

Two ways to run the same search (search_spaces/lstm.yaml: LSTM on JapaneseVowels, TPE
seeded, Hyperband, the file's epochs and batch size), with the same trial budget:

* ``loop``: one process running ``study.optimize`` the way the guides write it: an
  ``nn.LSTM`` + ``nn.Linear`` model on the last step's output, a ``TensorDataset`` in a
  ``DataLoader``, each batch moved with ``.to(device)``, Adam with the trial's learning rate
  and weight decay, ``trial.report`` / ``trial.should_prune`` after each epoch, an in-memory
  study. It searches the file's parameters that such a model has (lr, weight_decay,
  hidden_size, num_layers, dropout, bidirectional).
* ``tuner xW``: ``tuner launch search_spaces/lstm.yaml --workers W`` with one GPU visible
  (``CUDA_VISIBLE_DEVICES``), i.e. W worker processes sharing it, on a fresh embedded
  storage (or ``--storage``).

Trials per hour = finished trials / hours from the first trial's start to the last trial's
end. While each configuration runs, GPU utilisation and memory are sampled with NVML
(``pynvml`` from ``nvidia-ml-py``, imported only if present) every 0.5 s.

Without a GPU the same code runs on the CPU (``--quick`` does, for the tests); its numbers
say nothing about GPUs and RESULTS.md says so.

The last line is the figure: trials/hour of the loop and of each worker count, and the best
worker count over the loop (goal: at least 6x).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

LOOP_PARAMS = ("lr", "weight_decay", "hidden_size", "num_layers", "dropout", "bidirectional")


@dataclass
class GpuSamples:
    """NVML samples of one GPU while a configuration ran; empty without NVML."""

    utilisation: list[float] = field(default_factory=list)  # percent
    memory_mib: list[float] = field(default_factory=list)

    def describe(self) -> tuple[str, str, str]:
        if not self.utilisation:
            return "n/a", "n/a", "n/a"
        mean = sum(self.utilisation) / len(self.utilisation)
        return f"{mean:.0f}", f"{max(self.utilisation):.0f}", f"{max(self.memory_mib):.0f}"


class GpuSampler(threading.Thread):
    """Samples utilisation and used memory of GPU ``index`` until stopped."""

    def __init__(self, index: int, interval: float = 0.5) -> None:
        super().__init__(name="nvml-sampler", daemon=True)
        self.samples = GpuSamples()
        self._index = index
        self._interval = interval
        self._stopping = threading.Event()
        self._nvml: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
        except Exception:  # no nvidia-ml-py, no driver or no GPU: nothing to sample
            self._nvml = None

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def run(self) -> None:
        while self._nvml is not None and not self._stopping.wait(self._interval):
            rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            self.samples.utilisation.append(float(rates.gpu))
            self.samples.memory_mib.append(memory.used / 2**20)

    def stop(self) -> GpuSamples:
        self._stopping.set()
        if self.is_alive():
            self.join()
        return self.samples


@dataclass(frozen=True)
class Result:
    name: str
    workers: int  # 0 for the loop
    trials: int
    pruned: int
    seconds: float
    gpu: GpuSamples

    @property
    def per_hour(self) -> float:
        return self.trials / self.seconds * 3600 if self.seconds > 0 else float("nan")


def _document(args: Any, name: str) -> dict[str, Any]:
    document = yaml.safe_load(args.study.read_text())
    document["name"] = name
    document.pop("storage", None)
    document["budget"] = {"n_trials": args.trials}
    if args.epochs is not None:
        document["objective"]["epochs"] = args.epochs
        if "max_resource" in document.get("pruner", {}):
            document["pruner"]["max_resource"] = args.epochs
    return document


# --- the guide-style loop -------------------------------------------------------------------


def run_loop(args: Any) -> Result:
    """One process, ``study.optimize`` over a plain PyTorch training loop."""
    import optuna
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from tuner.objectives import trial_params
    from tuner.spec import StudySpec, build_pruner, build_sampler

    spec = StudySpec.model_validate(_document(args, "gpu-loop"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from tuner.objectives.data import load_data

    data = load_data(spec.objective.dataset, trial_params(spec, {}))  # type: ignore[arg-type]
    train = TensorDataset(data.train.x, data.train.y)
    val = TensorDataset(data.val.x, data.val.y)
    settings = trial_params(spec, {})
    space = {k: v for k, v in spec.search_space.items() if k in LOOP_PARAMS}

    class LSTMModel(nn.Module):
        def __init__(self, hidden: int, layers: int, dropout: float, bidirectional: bool):
            super().__init__()
            self.lstm = nn.LSTM(
                data.n_features,
                hidden,
                layers,
                batch_first=True,
                dropout=dropout if layers > 1 else 0.0,
                bidirectional=bidirectional,
            )
            self.fc = nn.Linear(hidden * (2 if bidirectional else 1), data.n_outputs)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)  # (B, T, H)
            return self.fc(out[:, -1, :])  # the last time step

    def objective(trial: optuna.Trial) -> float:
        from tuner.spec import suggest

        p = {**settings, **suggest(trial, space)}
        model = LSTMModel(p["hidden_size"], p["num_layers"], p["dropout"], p["bidirectional"]).to(
            device
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        criterion = nn.CrossEntropyLoss()
        train_loader = DataLoader(train, batch_size=int(p["batch_size"]), shuffle=True)
        val_loader = DataLoader(val, batch_size=int(p["batch_size"]))
        best = 0.0
        for epoch in range(spec.objective.epochs):
            model.train()
            for inputs, labels in train_loader:
                inputs, labels = inputs.to(device), labels.to(device)
                optimizer.zero_grad()
                loss = criterion(model(inputs), labels)
                loss.backward()
                optimizer.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for inputs, labels in val_loader:
                    inputs, labels = inputs.to(device), labels.to(device)
                    correct += (model(inputs).argmax(1) == labels).sum().item()
            accuracy = correct / len(val)
            best = max(best, accuracy)
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return best

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=build_sampler(spec), pruner=build_pruner(spec)
    )
    sampler = GpuSampler(args.gpu)
    sampler.start()
    study.optimize(objective, n_trials=args.trials)
    samples = sampler.stop()
    return _result("loop", 0, study.get_trials(deepcopy=False), samples)


# --- the service ----------------------------------------------------------------------------


def run_fleet(args: Any, workers: int) -> Result:
    """``tuner launch --workers W`` with one GPU visible, on a fresh storage."""
    from tuner.fleet import find_study
    from tuner.storage import open_storage

    home = Path(tempfile.mkdtemp(prefix=f"bench-gpu-{workers}w-"))
    name = f"gpu-{workers}w"
    study_file = home / "study.yaml"
    study_file.write_text(yaml.safe_dump(_document(args, name)))
    url = args.storage or f"journal://{home / 'journal.log'}"
    env = {
        **os.environ,
        "TUNER_HOME": str(home / "home"),
        "PYTHONPATH": str(_common.REPO),
    }
    if args.device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [sys.executable, "-m", "tuner", "launch", str(study_file), "--storage", url]
    command += ["--workers", str(workers)]
    sampler = GpuSampler(args.gpu)
    sampler.start()
    try:
        try:
            done = subprocess.run(command, env=env, cwd=home, capture_output=True, text=True)
        finally:
            samples = sampler.stop()
        if done.returncode != 0:
            raise RuntimeError(f"tuner launch failed:\n{done.stdout}\n{done.stderr}")
        trials = find_study(name, open_storage(url)).get_trials(deepcopy=False)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return _result(f"tuner x{workers}", workers, trials, samples)


def _result(name: str, workers: int, trials: list[Any], samples: GpuSamples) -> Result:
    finished = [t for t in trials if t.state.is_finished()]
    first = min(t.datetime_start for t in finished)
    last = max(t.datetime_complete for t in finished)
    return Result(
        name=name,
        workers=workers,
        trials=len(finished),
        pruned=sum(t.state.name == "PRUNED" for t in finished),
        seconds=(last - first).total_seconds(),
        gpu=samples,
    )


# --- report ---------------------------------------------------------------------------------

_HEADER = _common.table_header(
    ("run", "---"),
    ("trials", "---:"),
    ("pruned", "---:"),
    ("seconds", "---:"),
    ("trials/hour", "---:"),
    ("vs loop", "---:"),
    ("GPU util mean %", "---:"),
    ("GPU util max %", "---:"),
    ("GPU memory max MiB", "---:"),
)


def figure_line(results: list[Result], device: str) -> str:
    loop = next(r for r in results if r.workers == 0)
    fleet = [r for r in results if r.workers > 0]
    parts = ", ".join(f"x{r.workers} {r.per_hour:.0f}" for r in fleet)
    best = max(fleet, key=lambda r: r.per_hour)
    return (
        f"gpu throughput ({device}), trials/hour: loop {loop.per_hour:.0f}; {parts}; "
        f"best x{best.workers} {best.per_hour / loop.per_hour:.2f}x the loop (goal >= 6x)"
    )


def section(results: list[Result], env: _common.Environment, args: Any, device: str) -> str:
    loop = next(r for r in results if r.workers == 0)
    rows = []
    for r in results:
        util, peak, memory = r.gpu.describe()
        rows.append(
            f"| {r.name} | {r.trials} | {r.pruned} | {r.seconds:.1f} | {r.per_hour:.0f} "
            f"| {r.per_hour / loop.per_hour:.2f}x | {util} | {peak} | {memory} |"
        )
    if device == "cuda":
        status = f"Measured on GPU {args.gpu}: {args.gpu_name}."
    else:
        status = (
            "**The GPU figure was not measured in this session: no GPU machine was lent.** "
            "The script ran on the CPU only (the table below is that CPU run, a smoke test of "
            "the harness, not a GPU throughput). To measure, run the command below on a "
            "machine with a GPU and nvidia-ml-py installed (`pip install -e .[gpu]`)."
        )
    return f"""## GPU throughput (bench/gpu_throughput.py)

{status}

Run {_common.stamp()}.

{env.markdown()}
- Command: `{args.command}`
- Study: `{args.study.relative_to(_common.REPO)}`, `budget.n_trials: {args.trials}`
  {"(epochs " + str(args.epochs) + ")" if args.epochs else ""}; `loop` = one process,
  `study.optimize` over a plain DataLoader training loop (in-memory study); `tuner xW` =
  `tuner launch --workers W` with one GPU visible. Trials/hour from the first trial's start
  to the last trial's end; GPU utilisation and memory sampled with NVML every 0.5 s.

{_HEADER}
{chr(10).join(rows)}

Figure: `{figure_line(results, device)}`
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=Path("search_spaces/lstm.yaml"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=None, help="override objective.epochs")
    parser.add_argument("--gpu", type=int, default=0, help="the GPU index to use")
    parser.add_argument("--storage", default=None, help="storage URL for the tuner runs")
    parser.add_argument("--quick", action="store_true", help="a small run for the tests")
    parser.add_argument("--results", type=Path, default=_common.RESULTS)
    args = parser.parse_args(argv)
    if args.quick:  # the 2-minute quick study: its data set loads in well under a second
        args.study, args.workers, args.trials, args.epochs = (
            Path("search_spaces/quick.yaml"),
            [1, 2],
            2,
            1,
        )
    args.study = (args.study if args.study.is_absolute() else _common.REPO / args.study).resolve()
    args.command = _common.command_line()
    import torch

    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.gpu_name = torch.cuda.get_device_name(args.gpu) if args.device == "cuda" else "-"
    print(f"device: {args.device} {args.gpu_name}", flush=True)
    results = [run_loop(args)]
    print(f"  loop: {results[0].per_hour:.0f} trials/hour", flush=True)
    for workers in args.workers:
        results.append(run_fleet(args, workers))
        print(f"  tuner x{workers}: {results[-1].per_hour:.0f} trials/hour", flush=True)
    env = _common.environment()
    body = section(results, env, args, args.device)
    written = _common.write_section("gpu_throughput", body, args.results)
    print(f"results written to {written}")
    print(figure_line(results, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
