"""Each test type run for real: the Rust scheduler follows the shape the preset documents
(its Python `target_at` is the reference), and in the open model the achieved rate
follows the target second by second."""

from __future__ import annotations

import pytest

from revopipe import _core
from revopipe_plugins.loadtest.stages import PRESETS, preset
from revopipe_plugins.loadtest.tests.server import serve

DURATION = 8.0
PEAK = 200.0  # req/s: small enough for this machine, large enough to see every step


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_the_generator_follows_the_preset_shape(name: str) -> None:
    schedule = preset(name, PEAK, DURATION)
    with serve() as server:
        gen = _core.LoadGenerator(
            [("GET", server.url + "/", [], None, 1.0)],
            "open",
            schedule.as_core(),
            start_target=schedule.start_target,
        )
        gen.start()
        snaps = []
        while True:
            try:
                snap = gen.next_snapshot(5.0)
            except StopIteration:
                break
            if snap is not None:
                snaps.append(snap)
    assert sum(s["interval"] for s in snaps) == pytest.approx(DURATION, abs=0.3)
    for s in snaps:
        # the scheduled target the generator reports is the documented shape's
        assert s["target"] == pytest.approx(schedule.target_at(s["t"]), abs=PEAK * 0.02)
    # and the arrivals follow it: each second's count is the schedule's integral
    for s in snaps:
        if s["interval"] < 0.95:
            continue
        steps = 50
        expected = (
            sum(
                schedule.target_at(s["t"] - s["interval"] * (i + 0.5) / steps) for i in range(steps)
            )
            * s["interval"]
            / steps
        )
        assert s["requests"] + s["dropped"] == pytest.approx(expected, abs=max(6, expected * 0.1))
