import queue
import random
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from revopipe_plugins.profiler import sampler as sampler_module
from revopipe_plugins.profiler.sampler import OWN_THREAD_PREFIX, Profile, Sampler

HOT_SHARE = 0.7


def spin_hot(seconds: float) -> int:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1
    return x


def spin_cold(seconds: float) -> int:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1
    return x


def workload(seconds: float) -> None:
    # random 1 ms chunks rather than a fixed 7/3 cycle, so the 100 Hz sampler cannot alias
    rng = random.Random(7)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        if rng.random() < HOT_SHARE:
            spin_hot(0.001)
        else:
            spin_cold(0.001)


def sleeper(stop: threading.Event) -> None:
    # blocked in a C call made from user code: only the CPU-clock rule can tell it is idle
    while not stop.is_set():
        time.sleep(0.05)


@contextmanager
def idle_threads() -> Iterator[None]:
    stop = threading.Event()
    threads = [
        threading.Thread(target=stop.wait, name="idle-waiter", daemon=True),
        threading.Thread(target=sleeper, args=(stop,), name="idle-sleeper", daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(5)


def run_worker(seconds: float) -> None:
    t = threading.Thread(target=workload, args=(seconds,), name="hot-worker")
    t.start()
    t.join(seconds + 30)


def samples_of(profile: Profile, thread: str) -> int:
    return sum(n for s, n in profile.stacks.items() if s.split(";", 1)[0] == thread)


def test_hot_function_ranked_first_idle_and_sampler_excluded() -> None:
    with idle_threads():
        sampler = Sampler(rate_hz=100)
        sampler.start()
        try:
            # a first window lets the sampler read every idle thread's CPU clock once
            time.sleep(0.1)
            sampler.window()
            run_worker(2.0)
            profile = sampler.window()
        finally:
            sampler.stop()
    assert profile.ticks > 0 and profile.total_samples > 0
    top = profile.functions[0]
    assert top.function.endswith(":spin_hot"), profile.functions[:3]
    assert abs(top.self_share - HOT_SHARE) < 0.15, top
    second = profile.functions[1]
    assert second.function.endswith(":spin_cold"), profile.functions[:3]
    assert abs(second.self_share - (1 - HOT_SHARE)) < 0.15, second
    assert sum(f.self_samples for f in profile.functions) == profile.total_samples
    assert all(0 <= f.total_share <= 1 for f in profile.functions)
    assert sum(profile.stacks.values()) == profile.total_samples
    # the sampler never records itself
    assert not any(s.startswith(OWN_THREAD_PREFIX) for s in profile.stacks)
    assert not any("Sampler._run" in s for s in profile.stacks)
    # idle threads stay out by default: the Event waiter by its leaf frame, the sleeper by its
    # CPU clock (it may wake inside a tick now and then, hence a bound rather than zero)
    assert samples_of(profile, "idle-waiter") == 0
    assert samples_of(profile, "idle-sleeper") <= 0.05 * profile.ticks
    assert profile.idle_samples > 0
    assert profile.sampler_cpu_s >= 0 and profile.overhead >= 0
    assert profile.end_ns > profile.start_ns
    leaf_labels = {s.rsplit(";", 1)[1] for s in profile.stacks}
    assert any(lbl.rsplit(":", 1)[1].isdigit() for lbl in leaf_labels)
    assert profile.files[top.function].endswith("test_sampler.py")


def test_include_idle_keeps_blocked_threads() -> None:
    with idle_threads():
        sampler = Sampler(rate_hz=200, include_idle=True)
        with sampler:
            time.sleep(0.3)
        profile = sampler.window()
    waiter = [s for s in profile.stacks if s.startswith("idle-waiter;")]
    assert waiter, profile.stacks.keys()
    assert all(s.rsplit(";", 1)[1].startswith("threading:Condition.wait:") for s in waiter)
    assert not any(s.startswith(OWN_THREAD_PREFIX) for s in profile.stacks)


def test_window_resets_counts() -> None:
    sampler = Sampler(rate_hz=200, include_idle=True)
    with sampler:
        time.sleep(0.2)
    first = sampler.window()
    second = sampler.window()
    assert first.ticks > 0 and first.stacks
    assert second.ticks == 0 and second.total_samples == 0 and not second.stacks
    assert second.functions == ()
    assert second.start_ns >= first.end_ns


def test_stop_is_prompt_and_idempotent() -> None:
    sampler = Sampler(rate_hz=0.1)  # one tick every 10 s: stop() must not wait for it
    sampler.stop()  # before start: a no-op
    sampler.start()
    sampler.start()  # already running: a no-op
    assert sampler.running
    sampler.stop(timeout=2.0)
    assert not sampler.running
    sampler.stop()
    assert not sampler.running
    # restartable after stop
    sampler.start()
    sampler.stop(timeout=2.0)
    assert not sampler.running
    assert not any(t.name.startswith(OWN_THREAD_PREFIX) for t in threading.enumerate())


@pytest.mark.parametrize("rate", [0, -5, 1e9])
def test_bad_rate_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="rate_hz"):
        Sampler(rate_hz=rate)


def test_blocking_leaf_frames_are_idle_without_cpu_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    # rule 1 alone (platforms without per-thread CPU clocks): the leaf frame decides
    monkeypatch.setattr(sampler_module, "_thread_cpu_clock", lambda ident: None)
    stop = threading.Event()
    q: queue.Queue[int] = queue.Queue()
    sel = selectors.DefaultSelector()
    a, b = socket.socketpair()
    sel.register(a, selectors.EVENT_READ)

    def select_loop() -> None:
        while not stop.is_set():
            sel.select(timeout=0.05)

    threads = [
        threading.Thread(target=stop.wait, name="blk-event", daemon=True),
        threading.Thread(target=q.get, name="blk-queue", daemon=True),
        threading.Thread(target=select_loop, name="blk-select", daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        sampler = Sampler(rate_hz=200)
        with sampler:
            time.sleep(0.3)
        profile = sampler.window()
    finally:
        stop.set()
        q.put(1)
        for t in threads:
            t.join(5)
        sel.close()
        a.close()
        b.close()
    assert profile.ticks > 0 and profile.idle_samples > 0
    # select_loop itself may be caught between two select() calls now and then
    assert samples_of(profile, "blk-event") == 0
    assert samples_of(profile, "blk-queue") == 0
    assert samples_of(profile, "blk-select") <= 0.1 * profile.ticks
