"""What a load-test table or the CLI flags turn into: the model, the schedule and the
generator's arguments, and an error naming the key and the fix for each mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from revopipe_plugins.loadtest.plan import LoadTestPlan

URL = "http://127.0.0.1:8000/api"


def plan(**kw: Any) -> LoadTestPlan:
    return LoadTestPlan.model_validate(kw)


def test_users_alone_is_the_closed_model() -> None:
    args = plan(url=URL, users=50, test="load", duration="1m").generator_args()
    assert args["model"] == "closed" and args["max_connections"] == 0
    assert max(t for _, t in args["stages"]) == 50
    assert sum(d for d, _ in args["stages"]) == pytest.approx(60)


def test_rps_is_the_open_model_with_users_as_the_pool() -> None:
    args = plan(url=URL, users=50, rps=100, duration="5m").generator_args()
    assert (args["model"], args["max_connections"]) == ("open", 50)
    assert max(t for _, t in args["stages"]) == 100


def test_request_mix_bodies_and_headers(tmp_path: Path) -> None:
    body = tmp_path / "b.json"
    body.write_bytes(b'{"a": 1}')
    args = plan(
        requests=[
            {"url": URL, "weight": 3},
            {"url": URL + "/b", "method": "post", "body_file": str(body), "headers": {"X": "1"}},
        ],
        users=2,
    ).generator_args()
    assert args["requests"] == [
        ("GET", URL, [], None, 3.0),
        ("POST", URL + "/b", [("X", "1")], b'{"a": 1}', 1.0),
    ]


def test_volume_spreads_each_url() -> None:
    args = plan(url=URL, users=2, test="volume", volume_urls=10).generator_args()
    urls = {r[1] for r in args["requests"]}
    assert len(urls) == 10 and all("revopipe_volume=" in u for u in urls)


def test_custom_stages() -> None:
    args = plan(url=URL, test="custom", stages=["10s:5", "20s:5", "5s:0"]).generator_args()
    assert args["stages"] == [(10.0, 5.0), (20.0, 5.0), (5.0, 0.0)]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"users": 2}, "either `url` or `requests`"),
        ({"url": "https://x.example/", "users": 2}, "http://"),
        ({"url": URL}, "give `users`"),
        ({"url": URL, "test": "custom"}, "needs `stages`"),
        ({"url": URL, "users": 2, "stages": ["1s:1"]}, "for test = 'custom'"),
        ({"url": URL, "test": "custom", "stages": ["fast:1"]}, "stages[0]"),
        ({"url": URL, "users": 2, "thresholds": ["p99 << 1s"]}, "column"),
        ({"url": URL, "users": 2, "model": "open"}, "needs `rps`"),
        ({"url": URL, "users": 2, "body_file": "/nonexistent/b"}, "body_file"),
    ],
)
def test_mistakes_are_named(kw: dict[str, Any], expected: str) -> None:
    with pytest.raises((ValidationError, ValueError)) as info:
        plan(**kw).generator_args()
    assert expected in str(info.value)
