"""The `alerts` processor driven directly with a synthetic series and a fake clock: when a
rule fires and resolves, what flows downstream, what is persisted and restored, and what
a broken rule does to the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import Alert, MetricKind
from revopipe.testing import make
from revopipe_plugins.alerts import processor as processor_module
from revopipe_plugins.alerts.processor import AlertsProcessor

S = 1_000_000_000
T0 = 1_800_000_000 * S


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def batch(value: float | None, at: int) -> Batch:
    b = MetricBatchBuilder()
    if value is not None:
        b.add("queue.depth", value, MetricKind.GAUGE, "1", (("q", "a"),), timestamp=at)
    return Batch(b.build())


def processor(tmp_path: Path, clock: Clock, **rule: Any) -> AlertsProcessor:
    p = make(
        AlertsProcessor,
        {
            "inputs": ["x"],
            "default_rules": False,
            "evaluate_every": "1s",
            "stale_after": "3s",
            "rules": [{"name": "q_high", "expr": "value(queue.depth) > 10", **rule}],
        },
        tmp_path,
        name="al",
    )
    p.clock = clock  # type: ignore[method-assign]
    return p


def alerts_of(result: Any) -> list[Alert]:
    batches = result if isinstance(result, list) else [result] if result else []
    return [e for b in batches for e in b.events if isinstance(e, Alert)]


# Each step is one second: the value sent then (None: nothing sent, the series goes
# stale after 3 s), and the states the processor reports at that step.
CASES: list[tuple[str, dict[str, Any], list[float | None], list[list[str]]]] = [
    (
        "fires when `for` has elapsed, resolves when the condition clears",
        {"for": "3s"},
        [50, 50, 50, 50, 1, 1],
        [["pending"], [], [], ["firing"], ["resolved"], []],
    ),
    (
        "pending that never fires",
        {"for": "3s"},
        [50, 50, 1, 50, 1],
        [["pending"], [], ["inactive"], ["pending"], ["inactive"]],
    ),
    (
        "for = 0 fires at once",
        {},
        [50, 1],
        [["pending", "firing"], ["resolved"]],
    ),
    (
        "flapping held by keep_firing_for",
        {"keep_firing_for": "2s"},
        [50, 1, 50, 1, 1, 1],
        [["pending", "firing"], [], [], [], ["resolved"], []],
    ),
    (
        "missing data: the series goes stale and the alert resolves",
        {},
        [50, None, None, None, None],
        [["pending", "firing"], [], [], [], ["resolved"]],
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("rule", "values", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_rule_on_a_synthetic_series(
    tmp_path: Path, rule: dict[str, Any], values: list[float | None], expected: list[list[str]]
) -> None:
    clock = Clock()
    p = processor(tmp_path, clock, **rule)
    await p.start()
    try:
        seen: list[list[str]] = []
        for i, value in enumerate(values):
            clock.now = T0 + i * S
            out = await p.process(batch(value, clock.now))
            if value is None:
                out = await p.tick()
            seen.append([a.state for a in alerts_of(out)])
        assert seen == expected
    finally:
        await p.stop()


@pytest.mark.anyio
async def test_batches_pass_through_and_alert_events_carry_the_rule(tmp_path: Path) -> None:
    clock = Clock()
    p = processor(
        tmp_path,
        clock,
        severity="critical",
        labels={"team": "ops"},
        annotations={"summary": 'queue {{ $labels.q }} at {{ $value | printf "%.0f" }}'},
    )
    await p.start()
    try:
        b = batch(50, clock.now)
        out = await p.process(b)
        assert isinstance(out, list) and out[0] is b
        firing = [a for a in alerts_of(out) if a.state == "firing"]
        assert len(firing) == 1
        a = firing[0]
        assert (a.rule, str(a.severity), a.summary, dict(a.labels), a.value) == (
            "q_high",
            "critical",
            "queue a at 50",
            {"q": "a"},
            50.0,
        )
    finally:
        await p.stop()


@pytest.mark.anyio
async def test_state_and_history_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    p = processor(tmp_path, clock, **{"for": "3s"})
    await p.start()
    await p.process(batch(50, clock.now))
    clock.now += 2 * S
    await p.process(batch(50, clock.now))
    await p.stop()

    # The pending timer resumes: one more second of the condition fires it.
    clock.now += S
    q = processor(tmp_path, clock, **{"for": "3s"})
    await q.start()
    try:
        out = await q.process(batch(50, clock.now))
        assert [a.state for a in alerts_of(out)] == ["firing"]
        history = await q.control("history", {})
        assert [(e["from"], e["to"]) for e in history["history"]] == [
            ("inactive", "pending"),
            ("pending", "firing"),
        ]
    finally:
        await q.stop()


@pytest.mark.anyio
async def test_a_failing_rule_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    p = make(
        AlertsProcessor,
        {
            "inputs": ["x"],
            "default_rules": False,
            "rules": [
                {"name": "bad", "expr": "value(queue.depth) > 10"},
                {"name": "good", "expr": "value(queue.depth) > 10"},
            ],
        },
        tmp_path,
    )
    p.clock = clock  # type: ignore[method-assign]
    await p.start()
    try:
        # A fault no real rule produces on demand: evaluation of one rule raising.
        bad = p.lifecycles["bad"].rule.condition
        real = processor_module.evaluate

        def evaluate(expr: Any, snapshot: Any) -> Any:
            if expr is bad:
                raise ZeroDivisionError("boom")
            return real(expr, snapshot)

        monkeypatch.setattr(processor_module, "evaluate", evaluate)
        out = await p.process(batch(50, clock.now))
        assert {a.rule for a in alerts_of(out)} == {"good"}
        listing = await p.control("list", {})
        assert "boom" in listing["errors"]["bad"]
        assert p.context.stats.errors == 1
    finally:
        await p.stop()
