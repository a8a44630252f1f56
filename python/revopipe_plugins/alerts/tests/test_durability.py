"""Delivery that survives a failing receiver and a killed process: the outbox commits
every notification before sending, retries while the receiver refuses, and resumes after
kill -9. Each test stops by itself within its bounds."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from revopipe.runtime.pipeline import Pipeline
from revopipe_plugins.alerts.tests.stack import (
    config,
    free_port,
    gauge,
    push,
    receiver,
    to_toml,
)
from tests.conftest import revopipe_cmd, run_cli

HIGH = {"name": "q_high", "expr": "value(queue.depth) > 10", "severity": "critical"}


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_receiver_refusing_for_30s_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    async with receiver() as r:
        r.refuse_until = time.monotonic() + 30.0
        p = Pipeline.from_dict(config(str(tmp_path), port, r.url, [HIGH]))
        async with p.running():
            await push(port, gauge("queue.depth", 50, q="a"), gauge("queue.depth", 50, q="b"))
            await anyio.sleep(2.0)
            await push(port, gauge("queue.depth", 1, q="a"))  # resolves during the outage
            await r.wait_for(3, timeout=60)
            await anyio.sleep(1.0)  # anything duplicated would arrive by now
            outbox = await p.control("alerts", "outbox", {})
            p.stop()
    assert r.refused > 0
    keys = r.keys()
    statuses = sorted((a["labels"]["q"], a["status"]) for a in r.alerts())
    # every notification arrived; a repeat is only ever of the same notification
    assert sorted(set(statuses)) == [("a", "firing"), ("a", "resolved"), ("b", "firing")]
    assert len(set(keys)) == 3
    assert (outbox["pending"], outbox["dead"]) == (0, 0)


def _pending(data_dir: Path) -> int:
    """Rows waiting in the outbox, read the way an operator would: `revopipe alerts outbox`."""
    done = run_cli("alerts", "--config", str(data_dir.parent / "pipeline.toml"), "--json", "outbox")
    if done.returncode != 0:
        return -1  # not up yet
    return int(json.loads(done.stdout)["pending"])


@pytest.mark.slow
@pytest.mark.anyio
async def test_kill_9_with_undelivered_notifications_then_all_delivered(tmp_path: Path) -> None:
    ingest, hook_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    cfg = config(str(data_dir), ingest, f"http://127.0.0.1:{hook_port}", [HIGH])
    (tmp_path / "pipeline.toml").write_text(to_toml(cfg))
    log = (tmp_path / "run.log").open("w")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            revopipe_cmd("run", str(tmp_path / "pipeline.toml")), stdout=log, stderr=log
        )

    proc = start()
    try:
        # The receiver is down: the notifications can only wait in the outbox.
        await push(ingest, gauge("queue.depth", 50, q="a"), gauge("queue.depth", 70, q="b"))
        with anyio.fail_after(30):
            while await anyio.to_thread.run_sync(_pending, data_dir) < 2:
                await anyio.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        async with receiver(port=hook_port) as r:
            proc = start()
            await r.wait_for(2, timeout=30)
            await anyio.sleep(1.5)  # a second copy would arrive by now
            listing = run_cli(
                "alerts", "--config", str(tmp_path / "pipeline.toml"), "--json", "list"
            )
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert sorted(a["labels"]["q"] for a in r.alerts()) == ["a", "b"], (
        tmp_path / "run.log"
    ).read_text()
    assert all(a["status"] == "firing" for a in r.alerts())
    # the restarted process resumed the alerts' state instead of starting over
    states = {a["labels"]["q"]: a["state"] for a in json.loads(listing.stdout)["alerts"]}
    assert states == {"a": "firing", "b": "firing"}
