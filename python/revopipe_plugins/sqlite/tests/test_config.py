"""Bad sqlite sink configs are refused by `revopipe validate` with the key and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from revopipe.config.errors import ConfigInvalid
from revopipe.config.load import load_dict
from revopipe_plugins.sqlite.config import SqliteConfig, Tier

S = 1_000_000_000


def load(**sink: Any) -> SqliteConfig:
    spec = load_dict(
        {
            "sources": {"gen": {"type": "generate"}},
            "sinks": {"history": {"type": "sqlite", "inputs": ["gen"], **sink}},
        }
    )
    cfg = spec.components["history"].config
    assert isinstance(cfg, SqliteConfig)
    return cfg


def errors(**sink: Any) -> str:
    with pytest.raises(ConfigInvalid) as info:
        load(**sink)
    return info.value.render()


def test_defaults() -> None:
    cfg = load()
    assert cfg.path == "history.db"
    assert cfg.tiers() == [Tier(60 * S, 7 * 86400 * S), Tier(3600 * S, 90 * 86400 * S)]
    assert cfg.raw_retention == 86400 and cfg.max_size == 2**30


def test_custom_tiers_and_retention() -> None:
    cfg = load(
        rollups=["10s", "5m"],
        rollup_retention={"10s": "2d", "300s": "30d"},  # any spelling of the window
        raw_retention="6h",
        max_size="64MiB",
        path="sub/h.db",
    )
    assert cfg.tiers() == [Tier(10 * S, 2 * 86400 * S), Tier(300 * S, 30 * 86400 * S)]
    assert load(rollups=[]).tiers() == []  # the default retention table is not in the way


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        (
            {"path": "/var/lib/h.db"},
            "sinks.history.path: '/var/lib/h.db' is not a file name inside data_dir",
        ),
        ({"path": "../h.db"}, "set [pipeline] data_dir to move it"),
        ({"path": ""}, "sinks.history.path"),
        ({"rollups": ["1m", "90s"]}, "'90s' is not a whole multiple of '1m'"),
        ({"rollups": ["1h", "1m"]}, "shortest first"),
        ({"rollups": ["500ms"]}, "shorter than 1s"),
        (
            {"rollups": ["1m", "1h"], "rollup_retention": {"1m": "7d"}},
            'no retention for rollup \'1h\'; add it, e.g. rollup_retention = { "1h" = "30d" }',
        ),
        ({"rollups": ["10s"]}, "no retention for rollup '10s'"),
        (
            {"rollup_retention": {"1m": "7d", "1h": "30m"}},
            "'1h' = '1800s' keeps less than one '1h' window; keep it at least '1h'",
        ),
        (
            {"rollup_retention": {"1m": "7d", "1h": "9d", "5m": "1d"}},
            "'5m' is not one of the rollups ('1m', '1h')",
        ),
        ({"rollup_retention": {"1m": "7d", "60s": "7d", "1h": "9d"}}, "given twice"),
        ({"rollup_retention": {"minute": "7d"}}, "key 'minute' is not a rollup window"),
        ({"raw_retention": "0s"}, "sinks.history.raw_retention"),
        ({"raw_retention": 3600}, "expected a duration string"),
        ({"max_size": "10KiB"}, "sinks.history.max_size: 10240 bytes is too small"),
        ({"retention_interval": "0s"}, "sinks.history.retention_interval"),
        ({"significant_digits": 7}, "sinks.history.significant_digits"),
        ({"retension": "1d"}, "unknown key 'retension'"),
    ],
)
def test_bad_config_is_reported(sink: dict[str, Any], message: str) -> None:
    assert message in errors(**sink)
