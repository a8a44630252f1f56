"""In-process statistical CPU sampler: a daemon thread that snapshots every other thread's
Python stack at a fixed rate and counts collapsed stacks.

It uses only stdlib mechanisms: `sys._current_frames()` for the stacks, `threading.enumerate()`
for thread names, `time.thread_time()` inside the sampler thread for its own CPU cost, and,
where the platform has it, `time.pthread_getcpuclockid()` + `time.clock_gettime()` to read
each sampled thread's CPU clock.

Sampling is wall-clock driven, so a thread blocked in I/O or a lock would otherwise collect as
many samples as one burning CPU. Each sample is therefore classified on-CPU or idle, and idle
samples are left out of the stacks unless `include_idle=True`. The heuristic, documented here
because rankings depend on it:

1. Blocking leaf frame: the thread's innermost Python frame is one of a fixed set of stdlib
   functions that only park the thread (`threading.Condition.wait`, `Event.wait`,
   `Thread.join`, `queue.Queue.get`, `selectors.*.select`, `socket.socket.accept`,
   `socket.SocketIO.readinto`, the `concurrent.futures` worker loop, ...). C calls such as
   `time.sleep` or `sock.recv` leave no frame of their own, which is why rule 2 exists.
2. CPU clock did not advance: when per-thread CPU clocks are available, a thread whose CPU
   time grew by less than `IDLE_CPU_FRACTION` of the wall time since the previous tick is
   idle, whatever its leaf frame (this catches `time.sleep()` and blocking C calls made
   directly from user code). A thread seen for the first time has no previous reading, so
   only rule 1 applies to its first sample.

A thread waiting for the GIL is counted idle by rule 2 when it got little CPU in the interval,
which is what "on-CPU" means for a Python process. Rule 2 judges the interval that ends at the
sample, so a thread that just started or stopped burning CPU can be misclassified for one tick.

Each thread's CPU clock id is fetched once, when the thread first shows up in
`sys._current_frames()` (so it is alive then), and forgotten when it disappears.
"""

from __future__ import annotations

import concurrent.futures.thread
import queue
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any

# below this share of the wall interval a thread's CPU clock counts as "did not run"
IDLE_CPU_FRACTION = 0.05
# threads named so are the profiler's own helpers (sampler, checkpoint writer): never sampled
OWN_THREAD_PREFIX = "revopipe.profiler"

_StackKey = tuple[str, tuple[tuple[CodeType, int], ...]]


@dataclass(frozen=True)
class FunctionStats:
    """Samples attributed to one function (`module:qualname`) in a window."""

    function: str
    self_samples: int
    total_samples: int
    self_share: float
    total_share: float


@dataclass(frozen=True)
class Profile:
    """One sampling window.

    `stacks` maps `"thread;module:func:line;...;leaf"` (root first) to a sample count.
    `functions` is sorted by self samples, highest first. Shares are fractions (0..1) of
    `total_samples`, the on-CPU samples kept in `stacks`. `overhead` is the sampler thread's
    own CPU time divided by the window's wall time.
    """

    start_ns: int
    end_ns: int
    rate_hz: float
    ticks: int
    total_samples: int
    idle_samples: int
    stacks: dict[str, int]
    functions: tuple[FunctionStats, ...]
    files: dict[str, str] = field(default_factory=dict)
    sampler_cpu_s: float = 0.0
    overhead: float = 0.0

    @property
    def wall_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def _blocking_codes() -> frozenset[CodeType]:
    funcs: list[Callable[..., Any]] = [
        threading.Condition.wait,
        threading.Condition.wait_for,
        threading.Event.wait,
        threading.Thread.join,
        threading.Semaphore.acquire,
        threading.Barrier.wait,
        queue.Queue.get,
        socket.socket.accept,
        socket.SocketIO.readinto,
        concurrent.futures.thread._worker,
    ]
    wait_for_tstate = getattr(threading.Thread, "_wait_for_tstate_lock", None)
    if wait_for_tstate is not None:
        funcs.append(wait_for_tstate)
    for name in (
        "SelectSelector",
        "PollSelector",
        "EpollSelector",
        "DevpollSelector",
        "KqueueSelector",
    ):
        cls = getattr(selectors, name, None)
        if cls is not None:
            funcs.append(cls.select)
    codes = set()
    for f in funcs:
        code = getattr(f, "__code__", None)
        if isinstance(code, CodeType):
            codes.add(code)
    return frozenset(codes)


BLOCKING_CODES = _blocking_codes()


def _thread_cpu_clock(ident: int) -> int | None:
    getclock = getattr(time, "pthread_getcpuclockid", None)
    if getclock is None:
        return None
    try:
        clock: int = getclock(ident)
        time.clock_gettime(clock)
    except (OSError, OverflowError, ValueError):
        return None
    return clock


def _sanitize_thread_name(name: str) -> str:
    # ';' separates frames and a newline ends a collapsed-stack line
    return name.replace(";", "_").replace("\n", " ").replace("\r", " ")


class Sampler:
    """Samples all Python threads at `rate_hz` but its own and any other thread whose name
    starts with `OWN_THREAD_PREFIX`; `window()` returns and resets."""

    def __init__(self, rate_hz: float = 100.0, include_idle: bool = False) -> None:
        if not 0 < rate_hz <= 10_000:
            raise ValueError(
                f"profiler sampler: rate_hz must be in (0, 10000], got {rate_hz!r}; "
                "use e.g. 100 for 100 samples/s per thread"
            )
        self.rate_hz = float(rate_hz)
        self.include_idle = include_idle
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._modules: dict[CodeType, str] = {}
        self._clocks: dict[int, tuple[int | None, float]] = {}
        self._reset(time.time_ns())

    def _reset(self, now_ns: int) -> None:
        self._counts: dict[_StackKey, int] = {}
        self._ticks = 0
        self._idle = 0
        self._cpu_s = 0.0
        self._start_ns = now_ns

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        # a fresh event per run: a previous thread that outlived stop()'s join still exits
        self._stop = threading.Event()
        with self._lock:
            self._reset(time.time_ns())
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name=f"{OWN_THREAD_PREFIX}.sampler", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling; returns within one tick. Safe to call twice or before start()."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, stop: threading.Event) -> None:
        me = threading.get_ident()
        period = 1.0 / self.rate_hz
        next_tick = time.monotonic() + period
        while not stop.wait(max(0.0, next_tick - time.monotonic())):
            cpu0 = time.thread_time()
            self._sample(me)
            with self._lock:
                self._cpu_s += time.thread_time() - cpu0
            next_tick += period
            now = time.monotonic()
            if next_tick < now:
                # fell behind (suspended, overloaded): skip missed ticks instead of bursting
                next_tick = now + period

    def _sample(self, me: int) -> None:
        frames = sys._current_frames()
        names = {t.ident: t.name for t in threading.enumerate()}
        now = time.monotonic()
        keys: list[_StackKey] = []
        idle = 0
        clocks = self._clocks
        seen: dict[int, tuple[int | None, float]] = {}
        min_cpu = IDLE_CPU_FRACTION * self._last_interval(now)
        for ident, frame in frames.items():
            if ident == me or names.get(ident, "").startswith(OWN_THREAD_PREFIX):
                continue
            is_idle = frame.f_code in BLOCKING_CODES
            prev = clocks.get(ident)
            clock = prev[0] if prev is not None else _thread_cpu_clock(ident)
            cpu = -1.0
            if clock is not None:
                try:
                    cpu = time.clock_gettime(clock)
                except OSError:
                    clock = None
            if clock is not None and prev is not None and prev[1] >= 0 and cpu - prev[1] < min_cpu:
                is_idle = True
            seen[ident] = (clock, cpu)
            if is_idle:
                idle += 1
                if not self.include_idle:
                    continue
            keys.append((names.get(ident) or f"thread-{ident}", self._walk(frame)))
        # forget threads that exited, so a reused ident starts fresh
        self._clocks = seen
        self._last_now = now
        with self._lock:
            counts = self._counts
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
            self._ticks += 1
            self._idle += idle

    _last_now: float | None = None

    def _last_interval(self, now: float) -> float:
        last = self._last_now
        return now - last if last is not None else 1.0 / self.rate_hz

    def _walk(self, frame: FrameType) -> tuple[tuple[CodeType, int], ...]:
        stack: list[tuple[CodeType, int]] = []
        modules = self._modules
        f: FrameType | None = frame
        while f is not None:
            code = f.f_code
            if code not in modules:
                modules[code] = str(f.f_globals.get("__name__", "?"))
            stack.append((code, f.f_lineno or 0))
            f = f.f_back
        stack.reverse()
        return tuple(stack)

    def window(self) -> Profile:
        """The samples since start() or the previous window(), then reset the counts."""
        now_ns = time.time_ns()
        with self._lock:
            counts, ticks, idle, cpu_s, start_ns = (
                self._counts,
                self._ticks,
                self._idle,
                self._cpu_s,
                self._start_ns,
            )
            self._reset(now_ns)
        return self._build(counts, ticks, idle, cpu_s, start_ns, now_ns)

    def _label(self, code: CodeType, line: int) -> str:
        return f"{self._function(code)}:{line}"

    def _function(self, code: CodeType) -> str:
        return f"{self._modules.get(code, '?')}:{code.co_qualname}"

    def _build(
        self,
        counts: dict[_StackKey, int],
        ticks: int,
        idle: int,
        cpu_s: float,
        start_ns: int,
        end_ns: int,
    ) -> Profile:
        stacks: dict[str, int] = {}
        self_counts: dict[str, int] = {}
        total_counts: dict[str, int] = {}
        files: dict[str, str] = {}
        total = 0
        for (thread, frames), n in counts.items():
            total += n
            labels = [_sanitize_thread_name(thread)]
            funcs: set[str] = set()
            for code, line in frames:
                labels.append(self._label(code, line))
                fn = self._function(code)
                files.setdefault(fn, code.co_filename)
                funcs.add(fn)
            collapsed = ";".join(labels)
            stacks[collapsed] = stacks.get(collapsed, 0) + n
            if frames:
                leaf = self._function(frames[-1][0])
                self_counts[leaf] = self_counts.get(leaf, 0) + n
            # recursion counts a function once per sample for its total
            for fn in funcs:
                total_counts[fn] = total_counts.get(fn, 0) + n
        functions = tuple(
            sorted(
                _function_stats(total_counts, self_counts, total),
                key=lambda s: (-s.self_samples, -s.total_samples, s.function),
            )
        )
        wall = (end_ns - start_ns) / 1e9
        return Profile(
            start_ns=start_ns,
            end_ns=end_ns,
            rate_hz=self.rate_hz,
            ticks=ticks,
            total_samples=total,
            idle_samples=idle,
            stacks=stacks,
            functions=functions,
            files=files,
            sampler_cpu_s=cpu_s,
            overhead=cpu_s / wall if wall > 0 else 0.0,
        )


def _function_stats(
    total_counts: dict[str, int], self_counts: dict[str, int], total: int
) -> Iterable[FunctionStats]:
    for fn, tot in total_counts.items():
        own = self_counts.get(fn, 0)
        yield FunctionStats(
            function=fn,
            self_samples=own,
            total_samples=tot,
            self_share=own / total if total else 0.0,
            total_share=tot / total if total else 0.0,
        )
