"""Runs inside a process started by `revopipe profile`: samples it and writes the profile.

`_inject/sitecustomize.py` loads this file and `sampler.py` by path (not through the
`revopipe_plugins` package, whose import pulls in revopipe and would cost the child half a
second and skew its profile), so both stay stdlib-only. The child must be Python 3.11+.

The profile goes to `$REVOPIPE_PROFILE_DIR/profile-<pid>.json` (the format `report.load`
reads), atomically: every `CHECKPOINT_S` seconds ($REVOPIPE_PROFILE_CHECKPOINT_S overrides)
and at interpreter exit, so a process that dies without running `atexit` (os._exit, a fatal
signal, a segfault) still leaves what was sampled up to the last checkpoint. Every Python
process started under the command inherits the variables and writes its own file;
`revopipe profile` merges them.
A process forked without exec (multiprocessing's "fork") starts a fresh sampler of its own
and writes its profile when multiprocessing finalizes it (or at its last checkpoint).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
import time
from typing import Any, Protocol

ENV_DIR = "REVOPIPE_PROFILE_DIR"
ENV_RATE = "REVOPIPE_PROFILE_RATE"
ENV_IDLE = "REVOPIPE_PROFILE_INCLUDE_IDLE"
ENV_CHECKPOINT = "REVOPIPE_PROFILE_CHECKPOINT_S"
DUMP_FORMAT = "revopipe.profile/1"
CHECKPOINT_S = 2.0


class _Window(Protocol):
    start_ns: int
    end_ns: int
    rate_hz: float
    ticks: int
    idle_samples: int
    stacks: dict[str, int]
    files: dict[str, str]
    sampler_cpu_s: float


class _Sampler(Protocol):
    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...
    def window(self) -> _Window: ...


class _Run:
    """One process's sampler and the totals of its windows so far."""

    def __init__(self, sampler: _Sampler, out_dir: str, thread_prefix: str) -> None:
        self.sampler = sampler
        self.path = os.path.join(out_dir, f"profile-{os.getpid()}.json")
        self.thread_prefix = thread_prefix
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.start_ns = time.time_ns()
        self.end_ns = self.start_ns
        self.rate_hz = 0.0
        self.ticks = 0
        self.idle = 0
        # the checkpoint writer's own CPU counts as profiler overhead too
        self.cpu_s = 0.0
        self.stacks: dict[str, int] = {}
        self.files: dict[str, str] = {}
        self.finished = False

    def start(self) -> None:
        self.sampler.start()
        threading.Thread(
            target=self._checkpoints, name=f"{self.thread_prefix}.checkpoint", daemon=True
        ).start()

    def _checkpoints(self) -> None:
        every = float(os.environ.get(ENV_CHECKPOINT, CHECKPOINT_S))
        while not self.stop_event.wait(every):
            self.flush(final=False)

    def flush(self, final: bool) -> None:
        cpu0 = time.thread_time()
        with self.lock:
            if self.finished:
                return
            if final:
                self.finished = True
                self.stop_event.set()
                self.sampler.stop()
            w = self.sampler.window()
            self.end_ns = w.end_ns
            self.rate_hz = w.rate_hz
            self.ticks += w.ticks
            self.idle += w.idle_samples
            self.cpu_s += w.sampler_cpu_s
            for stack, n in w.stacks.items():
                self.stacks[stack] = self.stacks.get(stack, 0) + n
            self.files.update(w.files)
            data = self.dump()
            tmp = f"{self.path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
            self.cpu_s += time.thread_time() - cpu0

    def dump(self) -> dict[str, Any]:
        return {
            "format": DUMP_FORMAT,
            "pid": os.getpid(),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "rate_hz": self.rate_hz,
            "ticks": self.ticks,
            "idle_samples": self.idle,
            "sampler_cpu_s": self.cpu_s,
            "stacks": self.stacks,
            "files": self.files,
        }


_run: _Run | None = None


def _exit_flush() -> None:
    run = _run
    if run is not None:
        # OSError: the output directory went away, so the parent is gone: nobody to report to
        with contextlib.suppress(OSError):
            run.flush(final=True)


def activate(sampler_factory: Any, thread_prefix: str) -> bool:
    """Start profiling this process if `revopipe profile` asked for it (the env vars)."""
    global _run
    out_dir = os.environ.get(ENV_DIR)
    if not out_dir or _run is not None:
        return False
    rate = float(os.environ.get(ENV_RATE, "100"))
    include_idle = os.environ.get(ENV_IDLE, "") == "1"

    def begin() -> None:
        global _run
        _run = _Run(sampler_factory(rate, include_idle), out_dir, thread_prefix)
        _run.start()

    def begin_in_fork() -> None:
        # a forked child has no sampler thread and must not report its parent's samples
        begin()
        # multiprocessing's forked workers end with os._exit (no atexit) but run its
        # finalizers first. It clears the finalizers it inherited right after the fork, then
        # runs its after-fork callbacks: register from one of those. A low priority runs
        # ours after the program's own.
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None and _run is not None:
            mp_util.register_after_fork(
                _run, lambda _: mp_util.Finalize(None, _exit_flush, exitpriority=-100)
            )

    begin()
    atexit.register(_exit_flush)
    os.register_at_fork(after_in_child=begin_in_fork)
    return True
