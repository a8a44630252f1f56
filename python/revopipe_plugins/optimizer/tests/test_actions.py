"""Optimizer actions in a real pipeline: a change that makes things worse is reverted and
the audit trail shows both steps; one that helps is kept; dry_run changes nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from pydantic import Field

from revopipe import Batch, Pipeline, Sink, SinkConfig, hookimpl
from revopipe.actions import Action, ActionConfig, MetricView, Proposal
from revopipe.config import ConfigInvalid
from revopipe.config.load import load_dict
from revopipe.plugins import build_registry
from revopipe.tuning import Knob, Tunable, TuningError

BUSY = "revopipe.component.busy_time"
EVENTS_IN = "revopipe.component.events_in"


class SlowableConfig(SinkConfig):
    delay: float = Field(default=0.0, ge=0.0)


class SlowableSink(Sink[SlowableConfig]):
    """Spends `delay` seconds on every write; `delay` is tunable while running."""

    type_name = "slowable"
    Config = SlowableConfig
    tunables: ClassVar[Mapping[str, Tunable]] = {
        **Sink.tunables,
        "delay": Tunable(0.0, 1.0, "seconds per write"),
    }

    async def write(self, batch: Batch) -> None:
        if self.config.delay:
            await anyio.sleep(self.config.delay)


class SetDelayConfig(ActionConfig):
    target: str
    to: float


class SetDelay(Action[SetDelayConfig]):
    """Claims setting the sink's delay helps; the measurement decides."""

    type_name = "set_delay"
    Config = SetDelayConfig

    def propose(self, view: MetricView, knobs: Sequence[Knob]) -> Sequence[Proposal]:
        for k in knobs:
            if k.component == self.config.target and k.key == "delay" and k.value != self.config.to:
                return [
                    Proposal(
                        component=k.component,
                        changes={"delay": self.config.to},
                        title=f"set {k.component} delay to {self.config.to}",
                        reason="test",
                        measure_name="busy seconds per event",
                    )
                ]
        return []

    def measure(
        self, view: MetricView, proposal: Proposal, since: float, until: float
    ) -> float | None:
        tags = {"component": proposal.component}
        busy = view.mean(BUSY, tags, since, until)
        events = view.mean(EVENTS_IN, tags, since, until)
        return None if busy is None or not events else busy / events


class _Plugin:
    @hookimpl
    def revopipe_component_types(self) -> list[type]:
        return [SlowableSink]

    @hookimpl
    def revopipe_optimizer_actions(self) -> list[type]:
        return [SetDelay]


def _optimizer_config(
    tmp_path: Path,
    action: str,
    table: dict[str, Any],
    sources: dict[str, Any],
    sinks: dict[str, Any],
    mode: str = "apply",
) -> dict[str, Any]:
    """`sources` and `sinks` plus revopipe's own counters (`internal`) into an optimizer
    that evaluates every 300 ms and judges a change over 2 s."""
    return {
        "pipeline": {"data_dir": str(tmp_path), "drain_timeout": "5s"},
        "sources": {"self": {"type": "internal", "interval": "200ms"}, **sources},
        "processors": {
            "opt": {
                "type": "optimizer",
                "inputs": ["self"],
                "evaluate_every": "300ms",
                "changepoints": [],
                "trends": [],
                "actions": {
                    "mode": mode,
                    "use": [action],
                    "measure_for": "2s",
                    "cooldown": "1h",
                    action: table,
                },
            }
        },
        "sinks": {"hole": {"type": "blackhole", "inputs": ["opt"]}, **sinks},
    }


def _config(tmp_path: Path, mode: str, start_delay: float, to: float) -> dict[str, Any]:
    return _optimizer_config(
        tmp_path,
        "set_delay",
        {"target": "slow", "to": to},
        {"gen": {"type": "generate", "batch_size": 20, "interval": "5ms"}},
        {"slow": {"type": "slowable", "inputs": ["gen"], "delay": start_delay}},
        mode,
    )


async def _run_until_judged(pipeline: Pipeline, limit: float = 30.0) -> list[dict[str, Any]]:
    async with pipeline.running():
        with anyio.fail_after(limit):
            while True:
                await anyio.sleep(0.2)
                audit = await pipeline.control("opt", "audit", {})
                if any(r["step"] in ("kept", "reverted", "failed") for r in audit):
                    return list(audit)


def _pipeline(tmp_path: Path, mode: str, start_delay: float, to: float) -> Pipeline:
    registry = build_registry([("action-tests", _Plugin())])
    return Pipeline(load_dict(_config(tmp_path, mode, start_delay, to), registry), registry)


@pytest.mark.anyio
async def test_a_change_that_makes_things_worse_is_reverted_and_audited(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "apply", start_delay=0.0, to=0.02)
    audit = await _run_until_judged(pipeline)
    steps = [r["step"] for r in audit]
    assert steps == ["applied", "reverted"], audit
    applied, reverted = audit
    assert reverted["change_id"] == applied["id"]
    assert applied["changes"] == {"delay": 0.02} and applied["previous"] == {"delay": 0.0}
    # the revert sets the previous value back, and records what it undid
    assert reverted["changes"] == {"delay": 0.0} and reverted["previous"] == {"delay": 0.02}
    assert reverted["after"] > reverted["before"]
    assert "worse" in reverted["reason"]
    # the live config is back where it was, for the running instance too
    assert pipeline.spec.components["slow"].config.delay == 0.0  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_change_that_helps_is_kept(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "apply", start_delay=0.02, to=0.0)
    audit = await _run_until_judged(pipeline)
    assert [r["step"] for r in audit] == ["applied", "kept"], audit
    assert audit[1]["after"] < audit[1]["before"]
    assert pipeline.spec.components["slow"].config.delay == 0.0  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_dry_run_records_the_proposal_and_changes_nothing(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "dry_run", start_delay=0.0, to=0.02)
    async with pipeline.running():
        with anyio.fail_after(20):
            while True:
                await anyio.sleep(0.2)
                recs = await pipeline.control("opt", "recommendations", {})
                if recs:
                    break
        audit = await pipeline.control("opt", "audit", {})
    assert [r["step"] for r in audit] == ["dry_run"]
    assert "dry run" in recs[0]["title"]
    assert recs[0]["evidence"]["changes"] == "delay: 0 -> 0.02"
    assert pipeline.spec.components["slow"].config.delay == 0.0  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_retune_refuses_undeclared_keys_and_out_of_bounds_values(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "off", start_delay=0.0, to=0.0)
    with pytest.raises(TuningError, match="'inputs' is not tunable while running"):
        pipeline.retune("slow", {"inputs": 3})
    with pytest.raises(TuningError, match=r"delay = 5 is outside 0\.\.1"):
        pipeline.retune("slow", {"delay": 5})
    with pytest.raises(TuningError, match="no component named 'nope'"):
        pipeline.retune("nope", {"delay": 0.1})
    assert pipeline.retune("slow", {"batch_max": 8}) == {"batch_max": 1}
    assert pipeline.spec.components["slow"].config.batch_max == 8  # type: ignore[attr-defined]
    knobs = {(k.component, k.key): k.value for k in pipeline.knobs()}
    assert knobs[("slow", "batch_max")] == 8 and knobs[("self", "interval")] == 0.2


def test_unknown_action_is_a_config_error_with_a_suggestion(tmp_path: Path) -> None:
    registry = build_registry([("action-tests", _Plugin())])
    cfg = _config(tmp_path, "apply", 0.0, 0.0)
    cfg["processors"]["opt"]["actions"]["use"] = ["set_dealy"]
    with pytest.raises(ConfigInvalid, match=r"unknown optimizer action .set_dealy.*set_delay"):
        load_dict(cfg, registry)


def test_a_bad_action_table_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    registry = build_registry([("action-tests", _Plugin())])
    cfg = _config(tmp_path, "apply", 0.0, 0.0)
    cfg["processors"]["opt"]["actions"]["set_delay"] = {"target": "slow", "to": "fast"}
    with pytest.raises(ConfigInvalid, match=r"actions.set_delay: to: Input should be"):
        load_dict(cfg, registry)


# -- the built-in actions, in real pipelines --------------------------------------------


def _builtin(
    tmp_path: Path,
    action: str,
    table: dict[str, Any],
    sources: dict[str, Any],
    sinks: dict[str, Any],
) -> Pipeline:
    registry = build_registry([("action-tests", _Plugin())])
    config = _optimizer_config(tmp_path, action, table, sources, sinks)
    return Pipeline(load_dict(config, registry), registry)


@pytest.mark.anyio
async def test_sink_batch_raises_batch_max_of_a_busy_sink_and_keeps_it(tmp_path: Path) -> None:
    # 10 ms per write whatever its size: merging queued batches makes each event cheaper
    pipeline = _builtin(
        tmp_path,
        "sink_batch",
        {"window": 2.0, "busy_share": 0.5, "factor": 4},
        {"gen": {"type": "generate", "batch_size": 5, "interval": "1ms"}},
        {"slow": {"type": "slowable", "inputs": ["gen"], "delay": 0.01}},
    )
    audit = await _run_until_judged(pipeline)
    assert [r["step"] for r in audit] == ["applied", "kept"], audit
    assert audit[0]["component"] == "slow"
    assert audit[0]["changes"] == {"batch_max": 4} and audit[0]["previous"] == {"batch_max": 1}
    assert audit[1]["after"] < audit[1]["before"] / 2  # busy seconds per event
    assert pipeline.spec.components["slow"].config.batch_max == 4  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_collection_interval_lengthens_the_busiest_source(tmp_path: Path) -> None:
    pipeline = _builtin(
        tmp_path,
        "collection_interval",
        {"cpu_budget": 0.0001, "window": 2.0},
        {"host": {"type": "system", "interval": "100ms"}},
        {},
    )
    audit = await _run_until_judged(pipeline)
    applied, verdict = audit
    # the source collecting most often, doubled; judged by revopipe's CPU
    assert applied["component"] == "host" and applied["changes"] == {"interval": 0.2}
    assert applied["measure"] == "revopipe CPU (cores)" and applied["before"] > 0.0001
    # this test process's CPU has other users too, so either verdict is possible; the live
    # config must match the one recorded
    live = pipeline.spec.components["host"].config.interval  # type: ignore[attr-defined]
    assert verdict["step"] in ("kept", "reverted")
    assert live == (0.2 if verdict["step"] == "kept" else 0.1)
