"""Running the loop's commands, in one lane or several at once: each command's output in its log and its
progress bars on the console, and the first failing lane stops every other one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..commands.common import CommandFailed, die_with_parent

# PyTorch's message when a DataLoader worker dies of SIGABRT ("terminate called without an active
# exception" at interpreter shutdown, seen in about one lerobot-train run in twelve).
WORKER_ABORT = re.compile(r"DataLoader worker .* killed by signal: Aborted")
# Console lines worth showing from a child: progress bars and results.
PROGRESS_MARKS = ("%|", "Collected", "Merged", "success", "Overall")


@dataclass(frozen=True)
class TrainedRun:
    """What a lerobot-train step must have left for a non-zero exit to count as a shutdown abort."""

    steps: int
    checkpoint: Path  # checkpoints/last/pretrained_model

    def completed(self, log_path: Path) -> bool:
        """True only if the log shows the final save and ends in a DataLoader-worker abort, and the
        checkpoint loads: anything else is a real failure and must not be hidden."""
        lines = log_path.read_text(errors="replace").splitlines()
        final_save = re.compile(rf"Checkpoint policy after step {self.steps}\b")
        saved = any(final_save.search(line) for line in lines)
        aborted = any(WORKER_ABORT.search(line) for line in lines[-40:])
        return saved and aborted and _checkpoint_loads(self.checkpoint)


def _checkpoint_loads(checkpoint: Path) -> bool:
    """config.json parses and model.safetensors opens with at least one tensor (a cut-off write fails)."""
    from safetensors import SafetensorError, safe_open

    try:
        json.loads((checkpoint / "config.json").read_text())
        with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as weights:
            return len(list(weights.keys())) > 0
    except (OSError, ValueError, SafetensorError):
        return False


class Lanes:
    """Runs commands for one or more lanes that share the machine: the processes running now, a flag that
    stops every lane when one fails, the first failure (the one to report), and which lane prints
    progress bars (the others print finished lines only)."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.timings: dict[str, float] = {}  # seconds per step; lanes overlap
        self.processes: set[subprocess.Popen] = set()
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.lock = threading.Lock()  # a step starts, or the lanes stop, never both at once
        self.lane = threading.local()
        # Compute threads of collection and evaluation: all cores (None), until lanes share them.
        self.step_threads: int | None = None

    def run(
        self, name: str, command: list[str], threads: int | None = None, trained: TrainedRun | None = None
    ) -> None:
        """Run one command with `threads` compute threads (None: all cores), its full output in
        logs/<name>.log and its progress bars on the console. `trained` marks a lerobot-train step, which
        may abort at shutdown after its work is saved."""
        self.logs.mkdir(parents=True, exist_ok=True)
        print(f"\n=== {name}: {' '.join(command[:2])} ...", flush=True)
        start = time.perf_counter()
        log_path = self.logs / f"{name}.log"
        with open(log_path, "w") as log:
            log.write(" ".join(command) + "\n")
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
            if threads is not None:
                env["OMP_NUM_THREADS"] = str(threads)
            with self.lock:
                if self.stopping.is_set():
                    raise CommandFailed(f"{name} not started: another step of the demo failed")
                process = subprocess.Popen(
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    bufsize=1,
                    env=env,
                    preexec_fn=die_with_parent,  # a killed run leaves no lerobot-train writing into its output
                )
                self.processes.add(process)
            try:
                _forward_progress(process.stdout, log, name, bars=not getattr(self.lane, "quiet", False))
                code = process.wait()
            finally:
                self.processes.discard(process)
        self.timings[name] = time.perf_counter() - start
        if self.stopping.is_set():
            raise CommandFailed(f"{name} stopped: another step of the demo failed")
        if code != 0 and trained is not None and trained.completed(log_path):
            print(
                f"warning: {name} exited {code} at shutdown (a DataLoader worker aborted) after saving its "
                f"final checkpoint, which loads; continuing (log {log_path})",
                file=sys.stderr,
            )
        elif code != 0:
            tail = log_path.read_text().splitlines()[-25:]
            print("\n".join(tail), file=sys.stderr)
            raise CommandFailed(f"{name} failed (exit {code}); the lines above end its log {log_path}")

    def in_lane(self, work: Callable[[], Any], quiet: bool = False) -> Any:
        """`work()` as one lane: its first failure stops the other lanes' processes."""
        self.lane.quiet = quiet
        try:
            return work()
        except BaseException as error:
            with self.lock:
                self.failure = self.failure or error
                self.stopping.set()
                running = list(self.processes)
            for process in running:
                process.kill()
            raise

    def run_all(self, jobs: Sequence[Callable[[], Any]], lanes: int) -> list[Any]:
        """Every job, `lanes` at a time (collection and evaluation then get one compute thread each); only
        the first lane's progress bars are shown. Returns their results in order, or raises the first
        failure once every lane has stopped."""
        self.step_threads = 1 if lanes > 1 else None
        with ThreadPoolExecutor(max_workers=lanes) as pool:
            futures = [pool.submit(self.in_lane, job, quiet=i % lanes > 0) for i, job in enumerate(jobs)]
            for future in futures:
                future.exception()  # waits for every lane (stopped early after a failure)
        if self.failure is not None:
            raise self.failure
        return [future.result() for future in futures]


def _forward_progress(stream, log, name: str, bars: bool = True) -> None:
    """Copy a child's output to the log; show only progress bars and result lines on the console, named
    after the step. `bars=False` (a second lane) shows only finished lines, not the bars' updates."""
    buffer = ""
    while True:
        char = stream.read(1)
        if not char:
            break
        log.write(char)
        if char not in "\r\n":
            buffer += char
            continue
        shown = bars or char == "\n"
        if shown and any(mark in buffer for mark in PROGRESS_MARKS):
            sys.stdout.write(f"\r[{name}] {buffer[-140:]}" + ("" if char == "\r" else "\n"))
            sys.stdout.flush()
        buffer = ""
