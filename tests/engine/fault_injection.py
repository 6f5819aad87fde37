"""Kill a bundle training run at chosen moments and check that the restarted run ends where an uninterrupted one does.

Used by ``tests/engine/test_fault_injection.py`` (a few kill points, small and fast) and by
``benchmarks/fault_injection.py`` (many). A run is a subprocess of ``python -m medseg_dropclass run``;
it is killed with SIGKILL, either after a delay (anywhere: start-up, caching, an iteration, validation,
a save), just after its N-th optimizer step (in training, at the same point on any machine), or inside a
checkpoint save (half of the temporary file written, or just after the rename), by a wrapper that patches
``torch.save`` / ``os.replace`` and hooks every optimizer's step in the child.
"""

import dataclasses
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

REPO = pathlib.Path(__file__).resolve().parents[2]

# the child: optionally kill itself inside the N-th checkpoint save, then run the bundle like the CLI does
CHILD = r"""
import os, signal, sys
mode, count = os.environ.get("FAULT_MODE", ""), int(os.environ.get("FAULT_AT_SAVE", "0"))
if mode:
    import io
    import torch
    calls = {"n": 0}
    real_save, real_replace = torch.save, os.replace

    def save(obj, stream, *args, **kwargs):
        calls["n"] += 1
        if mode == "during" and calls["n"] == count:
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            stream.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            stream.flush()
            os.fsync(stream.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, stream, *args, **kwargs)

    def replace(source, target):
        real_replace(source, target)
        if mode == "after_rename" and calls["n"] == count:
            os.kill(os.getpid(), signal.SIGKILL)

    torch.save, os.replace = save, replace  # every save of the run (the checkpoint savers' only file writes)

    def after_step(optimizer, args, kwargs):
        calls["n"] += 1
        if calls["n"] == count:
            os.kill(os.getpid(), signal.SIGKILL)

    if mode == "after_step":  # counts optimizer steps instead of saves
        torch.save, os.replace = real_save, real_replace
        from torch.optim.optimizer import register_optimizer_step_post_hook

        register_optimizer_step_post_hook(after_step)
from medseg_dropclass.apps.cli import main
main(sys.argv[1:])
"""


@dataclasses.dataclass
class KillPoint:
    """Kill after ``delay`` seconds, or inside the ``save``-th checkpoint/model save (``mode``: during | after_rename),
    or just after the ``step``-th optimizer step of the run."""

    delay: Optional[float] = None
    save: int = 0
    mode: str = ""
    step: int = 0

    def describe(self) -> str:
        if self.step:
            return f"after step #{self.step}"
        return f"{self.mode} save #{self.save}" if self.mode else f"after {self.delay:.2f} s"


def train_command(dataset_dir: pathlib.Path, output_dir: pathlib.Path, **overrides) -> List[str]:
    arguments = [
        "run",
        "phantom2d_dropclass",
        "train",
        "--dataset_dir",
        str(dataset_dir),
        "--output_dir",
        str(output_dir),
    ]
    for key, value in overrides.items():
        arguments += [f"--{key}", str(value)]
    return [sys.executable, "-c", CHILD, *arguments]


def run(command: Sequence[str], kill: Optional[KillPoint] = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the child; with ``kill``, SIGKILL it at that point (the return code says whether it was killed)."""
    mode, count = ("after_step", kill.step) if kill and kill.step else (kill.mode, kill.save) if kill else ("", 0)
    env = dict(os.environ, FAULT_MODE=mode, FAULT_AT_SAVE=str(count))
    process = subprocess.Popen(
        list(command), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if kill is not None and kill.delay is not None:
        try:
            out, err = process.communicate(timeout=kill.delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            out, err = process.communicate()
    else:
        out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def final_state(output_dir: pathlib.Path) -> Dict[str, object]:
    """The run's result: its newest epoch checkpoint, its ``model.pt`` and which epoch ``model.pt`` is from."""
    folder = output_dir / "checkpoints"
    checkpoints = sorted(folder.glob("checkpoint_epoch=*.pt"), key=lambda p: int(p.stem.split("=")[1]))
    checkpoint = torch.load(checkpoints[-1], weights_only=True)
    model = torch.load(folder / "model.pt", weights_only=True) if (folder / "model.pt").is_file() else None
    return {
        "files": sorted(p.name for p in folder.iterdir()),
        "iteration": checkpoint["trainer"]["iteration"],
        "network": checkpoint["network"],
        "optimizer": checkpoint["optimizer"],
        "best": checkpoint.get("best_model"),
        "model": model,
    }


def differences(reference: Dict[str, object], resumed: Dict[str, object]) -> List[str]:
    """What differs between two final states (bitwise for tensors); empty when they agree."""
    problems = []
    for key in ("files", "iteration", "best"):
        if reference[key] != resumed[key]:
            problems.append(f"{key}: {reference[key]} != {resumed[key]}")
    for key in ("network", "model"):
        a, b = reference[key], resumed[key]
        if (a is None) != (b is None):
            problems.append(f"{key}: present in one run only")
        elif a is not None:
            problems += [f"{key}.{name}: not bitwise equal" for name in a if not torch.equal(a[name], b[name])]
    for index, state in reference["optimizer"]["state"].items():
        other = resumed["optimizer"]["state"][index]
        problems += [
            f"optimizer.state[{index}].{name}"
            for name, value in state.items()
            if torch.is_tensor(value) and not torch.equal(value, other[name])
        ]
    return problems


def run_with_kills(command: Sequence[str], kills: Sequence[KillPoint]) -> List[str]:
    """Run ``command`` with each kill point in turn (a run that ends before its kill point just ends), then
    restart it until it completes. Returns one line per attempt."""
    log = []
    for kill in kills:
        done = run(command, kill)
        killed = done.returncode == -signal.SIGKILL
        log.append(f"{kill.describe()}: {'killed' if killed else f'exit {done.returncode}'}")
        if not killed and done.returncode != 0:
            raise AssertionError(f"run failed (exit {done.returncode}) before its kill point:\n{done.stderr[-3000:]}")
    done = run(command)
    if done.returncode != 0:
        raise AssertionError(f"restart failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    log.append("restart: completed")
    return log


def random_kill_points(count: int, duration: float, saves: int, seed: int = 0) -> List[KillPoint]:
    """``count`` chained kill points: the first after a delay in ``(0.3, 1.0) x duration`` (start-up is the first
    third or so), then alternately a kill inside one of the next run's first saves (half of the file written,
    or just renamed: a resumed run has fewer saves left) and a delay in ``(0.3, 0.8) x duration``."""
    generator = random.Random(seed)
    points = [KillPoint(delay=generator.uniform(0.3, 1.0) * duration)]
    for index in range(1, count):
        if index % 2:
            points.append(
                KillPoint(save=generator.randint(1, min(3, saves)), mode=generator.choice(["during", "after_rename"]))
            )
        else:
            points.append(KillPoint(delay=generator.uniform(0.3, 0.8) * duration))
    return points[:count]


def timed(command: Sequence[str]) -> float:
    start = time.perf_counter()
    done = run(command)
    if done.returncode != 0:
        raise AssertionError(f"reference run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start
