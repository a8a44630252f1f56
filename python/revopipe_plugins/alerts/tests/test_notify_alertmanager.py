"""The alertmanager channel against a real Alertmanager (Debian `prometheus-alertmanager`)
started here on free loopback ports: a forwarded alert shows up in its v2 API with our labels
and annotations, a resolution ends it, and a bad post or a stopped Alertmanager maps to the
right delivery outcome."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from revopipe_plugins.alerts.notify import AlertmanagerChannel, Notification
from revopipe_plugins.alerts.notify.alertmanager import label_name, postable_alert

BINARY = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
CONFIG = """\
route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
"""
WAIT_S = 20.0

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not os.access(BINARY, os.X_OK):
        message = f"{BINARY} missing: apt-get install prometheus-alertmanager"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    work: Path = tmp_path_factory.mktemp("alertmanager")
    (work / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    log = (work / "log").open("wb")
    proc = subprocess.Popen(
        [
            BINARY,
            f"--config.file={work / 'alertmanager.yml'}",
            f"--storage.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"alertmanager did not start: {(work / 'log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def note(fp: str, status: str = "firing", **kw: Any) -> Notification:
    return Notification(
        dedup_key=f"{fp}:{status}",
        status=status,  # type: ignore[arg-type]
        alert_name="high_disk_usage",
        severity="warning",
        fingerprint=fp,
        group_key="alertname=high_disk_usage",
        starts_at_ns=time.time_ns() - 60 * 10**9,
        ends_at_ns=kw.pop("ends_at_ns", 0),
        labels={"instance": fp, "mount": "/var", "k8s.pod": "p-1"},
        annotations={"summary": "disk above 85 %", "description": f"{fp} /var at 91 %"},
        generator_url="http://revopipe.local/rules/high_disk_usage",
    )


async def find(url: str, instance: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{url}/api/v2/alerts",
            params={"filter": f'instance="{instance}"', "active": "true"},
            timeout=5.0,
        )
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()
    return alerts


async def wait_for(url: str, instance: str, present: bool) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_S
    while True:
        alerts = await find(url, instance)
        if bool(alerts) == present or time.monotonic() > deadline:
            return alerts
        await anyio.sleep(0.1)


@pytest.mark.anyio
async def test_alert_appears_with_our_labels_then_resolves(alertmanager):
    channel = AlertmanagerChannel("am", {"type": "alertmanager", "url": alertmanager + "/"})
    result = await channel.send([note("node-7")])
    assert result.outcome == "delivered", result.reason
    alerts = await wait_for(alertmanager, "node-7", present=True)
    assert len(alerts) == 1, "alert did not show up in Alertmanager's API in time"
    alert = alerts[0]
    assert alert["labels"] == {
        "alertname": "high_disk_usage",
        "severity": "warning",
        "instance": "node-7",
        "mount": "/var",
        "k8s_pod": "p-1",  # made a valid label name, not refused
    }
    assert alert["annotations"] == {
        "summary": "disk above 85 %",
        "description": "node-7 /var at 91 %",
    }
    assert alert["generatorURL"] == "http://revopipe.local/rules/high_disk_usage"
    assert alert["status"]["state"] == "active"
    assert alert["receivers"][0]["name"] == "blackhole"

    resolved = await channel.send([note("node-7", "resolved", ends_at_ns=time.time_ns())])
    await channel.aclose()
    assert resolved.outcome == "delivered"
    assert await wait_for(alertmanager, "node-7", present=False) == []


@pytest.mark.anyio
async def test_acknowledged_keeps_the_alert_with_an_annotation(alertmanager):
    channel = AlertmanagerChannel("am", {"type": "alertmanager", "url": alertmanager})
    assert (await channel.send([note("node-8", "acknowledged")])).outcome == "delivered"
    await channel.aclose()
    alerts = await wait_for(alertmanager, "node-8", present=True)
    assert alerts and alerts[0]["annotations"]["acknowledged"] == "true"


@pytest.mark.anyio
async def test_wrong_path_fails_and_stopped_alertmanager_retries(alertmanager):
    wrong = AlertmanagerChannel(
        "am", {"type": "alertmanager", "url": alertmanager + "/no/such/prefix"}
    )
    result = await wrong.send([note("x")])
    await wrong.aclose()
    assert result.outcome == "failed" and "HTTP 404" in result.reason
    down = AlertmanagerChannel(
        "am", {"type": "alertmanager", "url": f"http://127.0.0.1:{free_port()}"}
    )
    result = await down.send([note("x")])
    await down.aclose()
    assert result.outcome == "retry" and "cannot reach" in result.reason


def test_postable_alert_shape_and_label_names():
    alert = postable_alert(note("a", "resolved", ends_at_ns=1_000_000_001), now_ns=5)
    assert set(alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert alert["endsAt"] == "1970-01-01T00:00:01.000000001Z"
    assert "endsAt" not in postable_alert(note("a"), now_ns=5)
    assert postable_alert(note("a", "resolved"), now_ns=2 * 10**9)["endsAt"] == (
        "1970-01-01T00:00:02.000000000Z"
    )
    assert label_name("9lives") == "_9lives"
    assert label_name("a-b.c") == "a_b_c"
    assert label_name("") == "_"


def test_config_errors_and_secrets():
    with pytest.raises(ValueError, match=r"channel 'am' \(alertmanager\).*url"):
        AlertmanagerChannel("am", {"type": "alertmanager"})
    with pytest.raises(ValueError, match="not both"):
        AlertmanagerChannel(
            "am",
            {"type": "alertmanager", "url": "http://x", "username": "u", "bearer_token": "t"},
        )
    channel = AlertmanagerChannel(
        "am", {"type": "alertmanager", "url": "http://x", "bearer_token": "tok3n"}
    )
    assert "tok3n" not in repr(channel.config)
