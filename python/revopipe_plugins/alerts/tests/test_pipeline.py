"""The alerting path end to end in a running pipeline: samples pushed through a real `http`
source, rules evaluated, notifications routed and received by a real webhook server on
loopback; people's actions through the real `revopipe alerts` command line."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from revopipe.runtime.pipeline import Pipeline
from revopipe_plugins.alerts.tests.stack import Receiver, config, free_port, gauge, push, receiver
from tests.conftest import run_cli

HIGH = {"name": "q_high", "expr": "value(queue.depth) > 10", "severity": "critical"}


async def cli(api: str, *args: str) -> Any:
    """`revopipe alerts --api URL --json ARGS`, run as a user would, off the event loop."""

    def call() -> subprocess.CompletedProcess[str]:
        return run_cli("alerts", "--api", api, "--json", *args)

    done = await anyio.to_thread.run_sync(call)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def settle(r: Receiver, seconds: float = 1.0) -> None:
    """Give anything that should NOT arrive the time it would take to arrive."""
    await anyio.sleep(seconds)


@pytest.mark.anyio
async def test_fires_and_resolves_through_a_webhook(tmp_path: Path) -> None:
    port = free_port()
    async with receiver() as r:
        rule = {
            **HIGH,
            "labels": {"team": "ops"},
            "annotations": {"summary": 'queue {{ $labels.q }} at {{ $value | printf "%.0f" }}'},
        }
        p = Pipeline.from_dict(config(str(tmp_path), port, r.url, [rule]))
        async with p.running():
            await push(port, gauge("queue.depth", 50, q="a"))
            await r.wait_for(1)
            await push(port, gauge("queue.depth", 1, q="a"))
            await r.wait_for(2)
            p.stop()
    first, second = r.messages["hook"]
    assert first["status"] == "firing" and second["status"] == "resolved"
    alert = first["alerts"][0]
    assert alert["labels"] == {
        "alertname": "q_high",
        "q": "a",
        "severity": "critical",
        "team": "ops",
    }
    assert alert["annotations"] == {"summary": "queue a at 50"}
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    resolved = second["alerts"][0]
    assert resolved["fingerprint"] == alert["fingerprint"]
    assert resolved["startsAt"] == alert["startsAt"] and resolved["endsAt"] > alert["startsAt"]


@pytest.mark.anyio
async def test_grouping_puts_alerts_of_one_group_in_one_message(tmp_path: Path) -> None:
    port = free_port()
    route = {"channel": "hook", "group_by": ["alertname"], "group_wait": "1s"}
    async with receiver() as r:
        p = Pipeline.from_dict(config(str(tmp_path), port, r.url, [HIGH], route=route))
        async with p.running():
            # three queues cross within group_wait: one message with all three
            await push(
                port,
                gauge("queue.depth", 50, q="a"),
                gauge("queue.depth", 60, q="b"),
            )
            await push(port, gauge("queue.depth", 70, q="c"))
            await r.wait_for(3)
            await settle(r)
            p.stop()
    assert len(r.messages["hook"]) == 1
    message = r.messages["hook"][0]
    assert message["groupLabels"] == {"alertname": "q_high"}
    assert sorted(a["labels"]["q"] for a in message["alerts"]) == ["a", "b", "c"]


@pytest.mark.anyio
async def test_a_critical_alert_inhibits_the_matching_warning(tmp_path: Path) -> None:
    port = free_port()
    rules = [
        {
            "name": "q_warn",
            "expr": "value(queue.depth) > 10",
            "severity": "warning",
            "labels": {"alertgroup": "queue"},
        },
        {
            "name": "q_crit",
            "expr": "value(queue.depth) > 40",
            "severity": "critical",
            "labels": {"alertgroup": "queue"},
        },
    ]
    route = {"channel": "hook", "group_by": ["alertname"], "group_wait": "500ms"}
    async with receiver() as r:
        p = Pipeline.from_dict(config(str(tmp_path), port, r.url, rules, route=route))
        async with p.running():
            # queue a: both rules fire, only the critical is sent; queue b: warning only
            await push(port, gauge("queue.depth", 50, q="a"), gauge("queue.depth", 20, q="b"))
            await r.wait_for(2)
            await settle(r)
            assert p.api_url is not None
            listing = await cli(p.api_url, "list")
            p.stop()
    sent = sorted((a["labels"]["alertname"], a["labels"]["q"]) for a in r.alerts())
    assert sent == [("q_crit", "a"), ("q_warn", "b")]
    muted = {
        (a["rule"], a["labels"]["q"]): a["muted_by"] for a in listing["alerts"] if a["muted_by"]
    }
    assert list(muted) == [("q_warn", "a")]
    assert muted[("q_warn", "a")][0].startswith("inhibited_by:")


@pytest.mark.anyio
async def test_a_silence_from_the_cli_mutes_until_expired(tmp_path: Path) -> None:
    port = free_port()
    async with receiver() as r:
        p = Pipeline.from_dict(config(str(tmp_path), port, r.url, [HIGH]))
        async with p.running():
            await push(port, gauge("x", 0))  # the source is up: the API is too
            assert p.api_url is not None
            made = await cli(
                p.api_url, "silence", "alertname=q_high", 'q="a"', "-d", "1h", "-m", "deploy"
            )
            silence = made["silence"]
            assert silence["active"] and silence["comment"] == "deploy"
            await push(port, gauge("queue.depth", 50, q="a"), gauge("queue.depth", 50, q="b"))
            await r.wait_for(1)
            await settle(r)
            assert [a["labels"]["q"] for a in r.alerts()] == ["b"]
            listing = await cli(p.api_url, "list")
            by_queue = {a["labels"]["q"]: a["muted_by"] for a in listing["alerts"]}
            assert by_queue == {"a": [f"silence:{silence['id']}"], "b": []}

            await cli(p.api_url, "expire", silence["id"])
            await r.wait_for(2)
            shown = await cli(p.api_url, "silences", "--all")
            p.stop()
    # As with Alertmanager, the group's next message carries all of its firing alerts:
    # `b` again (same fingerprint and start: the same notification), and now `a`.
    first, second = r.messages["hook"]
    assert [a["labels"]["q"] for a in first["alerts"]] == ["b"]
    assert sorted(a["labels"]["q"] for a in second["alerts"]) == ["a", "b"]
    assert len(set(r.keys())) == 2
    assert [s["active"] for s in shown["silences"]] == [False]


@pytest.mark.anyio
async def test_escalation_reaches_the_next_tier_unless_acknowledged(tmp_path: Path) -> None:
    port = free_port()
    rules = [
        {**HIGH, "name": "q_high", "escalate_after": "1s", "escalate_to": ["tier2"]},
        # long enough for a `revopipe alerts ack` subprocess to start on a loaded machine
        {**HIGH, "name": "q_acked", "escalate_after": "8s", "escalate_to": ["tier2"]},
    ]
    async with receiver() as r:
        cfg = config(str(tmp_path), port, r.url, rules, channels=("hook", "tier2"))
        p = Pipeline.from_dict(cfg)
        async with p.running():
            await push(port, gauge("queue.depth", 50, q="a"))
            fired = time.monotonic()
            await r.wait_for(2)  # both rules on the first tier
            assert p.api_url is not None
            acked = await cli(p.api_url, "ack", "q_acked", "--by", "alice")
            assert acked["by"] == "alice" and len(acked["acknowledged"]) == 1
            await r.wait_for(1, channel="tier2")
            with anyio.fail_after(20):  # until past q_acked's escalation time
                while time.monotonic() - fired < 9.0:
                    await anyio.sleep(0.1)
            history = await cli(p.api_url, "history", "--rule", "q_acked")
            p.stop()
    escalated = r.alerts("tier2")
    assert [a["labels"]["alertname"] for a in escalated] == ["q_high"]
    assert escalated[0]["labels"]["escalation_tier"] == "1"
    acks = [e for e in history["history"] if e["kind"] == "ack"]
    assert [(e["by"], e["to"]) for e in acks] == [("alice", "firing")]


@pytest.mark.anyio
async def test_repeat_interval_resends_a_still_firing_alert(tmp_path: Path) -> None:
    port = free_port()
    rules = [{**HIGH, "repeat_interval": "1s"}]
    async with receiver() as r:
        p = Pipeline.from_dict(config(str(tmp_path), port, r.url, rules))
        async with p.running():
            await push(port, gauge("queue.depth", 50, q="a"))
            await r.wait_for(1)
            first = len(r.alerts())
            await r.wait_for(3, timeout=10)
            p.stop()
    assert first == 1
    fingerprints = {a["fingerprint"] for a in r.alerts()}
    assert len(fingerprints) == 1 and all(a["status"] == "firing" for a in r.alerts())
