"""`revopipe history`: finds the sqlite sink's database through the pipeline file and
shows metrics, samples, percentiles and events; clear errors otherwise."""

from __future__ import annotations

import json
from array import array
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from revopipe import _core
from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.cli import cli
from revopipe.events import Alert, HistogramSnapshot, MetricKind, Severity, now_ns
from revopipe_plugins.sqlite.config import SqliteConfig
from revopipe_plugins.sqlite.store import HistoryStore
from tests.conftest import run_cli

S = 1_000_000_000

PIPELINE = """
[pipeline]
data_dir = "{data}"

[sources.gen]
type = "generate"

[sinks.history]
type = "sqlite"
inputs = ["gen"]
path = "hist/metrics.db"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A pipeline file whose sqlite sink's database holds the last 10 minutes."""
    data = tmp_path / "data"
    path = tmp_path / "pipeline.toml"
    path.write_text(PIPELINE.format(data=data))
    cfg = SqliteConfig(type="sqlite", inputs=["gen"])
    store = HistoryStore(
        data / "hist" / "metrics.db",
        cfg.tiers(),
        raw_retention_ns=86400 * S,
        events_retention_ns=86400 * S,
    )
    now = now_ns()
    b = MetricBatchBuilder()
    for i in range(60):
        t = now - (60 - i) * 10 * S
        b.add("cpu", float(i), MetricKind.GAUGE, "1", {"host": "web-1"}, t)
        b.add("cpu", float(-i), MetricKind.GAUGE, "1", {"host": "db-1"}, t)
    agg = _core.Aggregator(10 * S)
    agg.ingest_values("latency", "s", (("route", "/"),), array("d", [0.1, 0.2, 0.3, 0.4]), now)
    (r,) = agg.flush(0, force=True)
    snap = HistogramSnapshot.from_core(r, now - 5 * S, now)
    alert = Alert("cpu_high", "firing", Severity.WARNING, "cpu above 90%", timestamp=now - S)
    store.write(Batch(b.build(), (snap, alert)))
    store.close()
    return path


def history(*args: str) -> Result:
    return CliRunner().invoke(cli, ["history", *args], catch_exceptions=False)


def test_overview(config: Path) -> None:
    res = history(str(config), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["path"].endswith("hist/metrics.db")
    assert [s["source"] for s in data["sources"]] == ["raw", "1m", "1h"]
    latest = {(s["name"], s["tags"].get("host")): s["latest"] for s in data["series"]}
    assert latest[("cpu", "web-1")] == 59.0 and latest[("cpu", "db-1")] == -59.0
    assert data["event_types"] == ["alert"]
    text = history(str(config))
    assert text.exit_code == 0
    assert "cpu" in text.output and "host=web-1" in text.output and "latency" in text.output
    assert "events: alert" in text.output


def test_samples_with_tags_step_and_source(config: Path) -> None:
    res = history(str(config), "--metric", "cpu", "--tag", "host=web-1", "--since", "5m", "--json")
    assert res.exit_code == 0, res.output
    (series,) = json.loads(res.output)
    assert series["tags"] == {"host": "web-1"} and series["source"] == "raw"
    got = [s["value"] for s in series["samples"]]  # the last 5 minutes, give or take
    assert 25 <= len(got) <= 30 and got == [float(i) for i in range(60 - len(got), 60)]
    res = history(str(config), "--metric", "cpu", "--tag", "host!=web-1", "--step", "1m")
    assert res.exit_code == 0, res.output
    assert "host=db-1" in res.output and "from 1m, step 1m" in res.output
    forced = history(str(config), "--metric", "c*", "--source", "1h", "--json")
    assert {s["source"] for s in json.loads(forced.output)} == {"1h"}


def test_percentiles_and_events(config: Path) -> None:
    res = history(str(config), "--metric", "latency", "--percentiles", "50,100", "--json")
    assert res.exit_code == 0, res.output
    (p,) = json.loads(res.output)
    assert p["count"] == 4 and p["percentiles"]["100.0"] == pytest.approx(0.4, rel=1e-3)
    text = history(str(config), "--metric", "latency", "--percentiles", "50,99")
    assert "p50" in text.output and "p99" in text.output
    ev = json.loads(history(str(config), "--events", "--type", "alert", "--json").output)
    assert ev[0]["data"]["summary"] == "cpu above 90%"
    assert "cpu_high" in history(str(config), "--events").output


def test_errors_name_the_problem(config: Path, tmp_path: Path) -> None:
    res = history(str(config), "--since", "yesterday")
    assert res.exit_code == 2 and "--since" in res.output
    res = history(str(config), "--metric", "cpu", "--tag", "host=~(")
    assert res.exit_code == 2 and "bad regex" in res.output
    res = history(str(config), "--sink", "other")
    assert res.exit_code == 1 and "no sqlite sink named 'other'" in res.output
    res = history(str(config), "--metric", "cpu", "--source", "5m")
    assert res.exit_code == 1 and "no source '5m'" in res.output

    two = tmp_path / "two.toml"
    two.write_text(config.read_text() + '\n[sinks.more]\ntype = "sqlite"\ninputs = ["gen"]\n')
    res = history(str(two))
    assert res.exit_code == 1 and "several sqlite sinks (history, more)" in res.output
    res = history(str(two), "--sink", "more")
    assert res.exit_code == 1 and "no history database" in res.output

    none = tmp_path / "none.toml"
    none.write_text(
        '[sources.gen]\ntype = "generate"\n[sinks.out]\ntype = "blackhole"\ninputs = ["gen"]\n'
    )
    res = history(str(none))
    assert res.exit_code == 1 and "has no sqlite sink" in res.output

    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace('path = "hist/metrics.db"', 'path = "/x.db"'))
    res = CliRunner().invoke(cli, ["history", str(bad)])
    assert res.exit_code == 2 and "sinks.history.path" in res.output


def test_history_is_a_subcommand_of_the_installed_cli(config: Path) -> None:
    res = run_cli("history", str(config), "--metric", "cpu", "--json")
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)) == 2
