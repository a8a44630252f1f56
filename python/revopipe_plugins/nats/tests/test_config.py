"""Config errors name the component and the key; subject coverage matches NATS semantics."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revopipe import Pipeline
from revopipe.config import ConfigInvalid
from revopipe_plugins.nats.config import covers, subject_valid


def errors_of(sinks: dict[str, Any] | None = None, sources: dict[str, Any] | None = None) -> str:
    data: dict[str, Any] = {"sources": sources or {"g": {"type": "generate"}}}
    if sinks:
        data["sinks"] = sinks
    with pytest.raises(ConfigInvalid) as info:
        Pipeline.from_dict(data)
    return str(info.value)


def test_sink_batch_max_must_be_one() -> None:
    text = errors_of({"bus": {"type": "nats", "inputs": ["g"], "batch_max": 8}})
    assert "sinks.bus.batch_max" in text and "must be 1" in text


def test_subject_outside_stream_subjects() -> None:
    text = errors_of({"bus": {"type": "nats", "inputs": ["g"], "subject": "metrics.a"}})
    assert "sinks.bus.subject" in text and "stream_subjects" in text
    text = errors_of(sources={"in": {"type": "nats", "subject": "other.>"}})
    assert "sources.in.subject" in text


def test_bad_values_name_their_key() -> None:
    text = errors_of(
        sources={
            "in": {
                "type": "nats",
                "url": "http://127.0.0.1:4222",
                "durable": "a.b",
                "ack_wait": "10",
                "leader": ".x",
            }
        }
    )
    for key in ("url", "durable", "ack_wait", "leader"):
        assert f"sources.in.{key}" in text
    text = errors_of({"bus": {"type": "nats", "inputs": ["g"], "subject": "revopipe.*"}})
    assert "sinks.bus.subject" in text and "wildcards" in text


def test_auth_combinations() -> None:
    text = errors_of(sources={"in": {"type": "nats", "token": "t", "user": "u", "password": "p"}})
    assert "sources.in" in text and "token" in text
    text = errors_of(sources={"in": {"type": "nats", "user": "u"}})
    assert "password" in text


def test_defaults_validate() -> None:
    Pipeline.from_dict(
        {
            "sources": {"in": {"type": "nats", "leader": "global", "durable": "global"}},
            "sinks": {"bus": {"type": "nats", "inputs": ["in"], "subject": "revopipe.partials"}},
        }
    )


token = st.sampled_from(["a", "b", "c", "*"])
pattern = st.lists(token, min_size=1, max_size=4).map(".".join) | st.lists(
    token, min_size=0, max_size=3
).map(lambda ts: ".".join([*ts, ">"]))
literal = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=5).map(".".join)


def matches(pat: str, subject: str) -> bool:
    """NATS matching of a literal subject, by regular expression (an independent oracle)."""
    rx = ""
    for i, tok in enumerate(pat.split(".")):
        sep = r"\." if i else ""
        if tok == ">":
            rx += sep + r"[^.]+(\.[^.]+)*"
        elif tok == "*":
            rx += sep + r"[^.]+"
        else:
            rx += sep + re.escape(tok)
    return re.fullmatch(rx, subject) is not None


@given(pattern, literal)
def test_covers_a_literal_is_matching(pat: str, subject: str) -> None:
    assert covers(pat, subject) == matches(pat, subject)


@given(pattern, pattern, literal)
def test_covers_a_pattern_means_every_match_matches(outer: str, inner: str, subject: str) -> None:
    if covers(outer, inner) and matches(inner, subject):
        assert matches(outer, subject)


@given(pattern)
def test_patterns_are_valid_filters_not_publish_subjects(pat: str) -> None:
    assert subject_valid(pat, wildcards=True)
    assert subject_valid(pat, wildcards=False) == ("*" not in pat and ">" not in pat)
